/**
 * /metrics as an operator alerts on it: a fleet with a running webhook bot, a disabled
 * bot, a quarantined bot and a crashed one (in backoff). Every series docs/metrics.md lists
 * is there, counters survive a worker restart, no token appears, and promtool (Debian's
 * prometheus package, installed by .ci/run) passes `check metrics`.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CLI, createFleet, FIXTURES, type Fleet } from './helpers/fleet.js';
import { waitFor } from './helpers/wait.js';
import { promtool } from './helpers/tools.js';

const MISBEHAVE = path.join(FIXTURES, 'misbehave.js');


/** The value of the one sample `name{labels}` in `body`, or null. `labels` is the exact label text. */
function sample(body: string, name: string, labels = ''): number | null {
  const line = body.split('\n').find((l) => l.startsWith(labels ? `${name}{${labels}} ` : `${name} `));
  return line === undefined ? null : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('metrics of a fleet with a running, a disabled, a quarantined and a crashed bot', () => {
  let fleet: Fleet;
  let body = '';
  const scrape = async () => (body = (await fleet.statusHttp('/metrics')).body);
  before(async () => {
    fleet = await createFleet({ RESTART_BACKOFF_MS: '600000', RESTART_COOLDOWN_MS: '600000' }, { webhook: true });
    await fleet.addBot('hooked', { mode: 'webhook', handler: MISBEHAVE });
    await fleet.addBot('resting', { mode: 'polling' });
    await fleet.addBot('broken', { mode: 'polling', handler: path.join(FIXTURES, 'not-there.js') });
    await fleet.addBot('crasher', { mode: 'polling', handler: MISBEHAVE, settings: { apiKey: 'handler-secret-value', greeting: 'hello' } });
    const off = await fleet.cli(['bots', 'disable', 'resting']);
    assert.equal(off.code, 0, off.stderr);
    await fleet.startMaster();
    await fleet.waitRunning(['hooked', 'crasher']);
    await fleet.waitWorker('broken', (w) => w.state === 'quarantined', 15_000, 'quarantine of a missing handler');
    fleet.emulator.userSends(fleet.tg('crasher'), 1, 'crash');
    // The first crash restarts at once (a 0 ms backoff); the redelivered crash update ends the next worker, and that backoff lasts.
    await fleet.waitWorker('crasher', (w) => w.state === 'backoff' && /restart in 600000 ms/.test(String(w.stateReason)), 15_000, 'the long backoff after a crash');
    assert.equal(await fleet.chat('hooked', 5, 'one'), 'ok: one');
    assert.equal(await fleet.chat('hooked', 5, 'two'), 'ok: two');
    const unknown = await fetch(`http://127.0.0.1:${fleet.env.WEBHOOK_PORT}/webhook/nobody`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"update_id":1}' });
    assert.equal(unknown.status, 404);
  });
  after(() => fleet.stop());

  test('one state series per bot, and each bot\'s info', async () => {
    await scrape();
    assert.equal(sample(body, 'botfleet_worker_state', 'bot="hooked",state="running"'), 1);
    assert.equal(sample(body, 'botfleet_worker_state', 'bot="resting",state="stopped"'), 1);
    assert.equal(sample(body, 'botfleet_worker_state', 'bot="broken",state="quarantined"'), 1);
    assert.equal(sample(body, 'botfleet_worker_state', 'bot="crasher",state="backoff"'), 1);
    assert.equal(body.split('\n').filter((l) => l.startsWith('botfleet_worker_state{')).length, 4, 'one series per bot');
    assert.match(body, /^botfleet_bot_info\{bot="hooked",name="hooked",mode="webhook",username="[^"]*"\} 1$/m);
    assert.match(body, /^botfleet_bot_info\{bot="resting",name="resting",mode="",username=""\} 1$/m);
    // The crash update is redelivered to the next worker (at least once), which may crash too before the backoff.
    assert.ok(sample(body, 'botfleet_worker_exits_total', 'bot="crasher",reason="crash"')! >= 1);
    // Every reason from 0 at a bot's first appearance, so increase() counts its first exit (the alerts rely on it).
    assert.equal(body.split('\n').filter((l) => l.startsWith('botfleet_worker_exits_total{bot="hooked"')).length, 11, 'one series per reason');
    assert.equal(sample(body, 'botfleet_worker_exits_total', 'bot="hooked",reason="hung"'), 0);
    // What one polling bot costs (docs/metrics.md "Series per bot"): a disabled one, no exits, no journal.
    assert.equal(body.split('\n').filter((l) => l.includes('bot="resting"')).length, 38);
  });

  test('updates, handler durations, webhook requests and their latency', async () => {
    // A handler is counted as handled when it starts and in the histogram when it ends: a heartbeat may fall between.
    await waitFor(async () => (sample(await scrape(), 'botfleet_updates_handled_total', 'bot="hooked"') ?? 0) >= 2
      && (sample(body, 'botfleet_handler_duration_seconds_count', 'bot="hooked"') ?? 0) >= 2, 5000, 'a heartbeat with both updates handled and timed');
    assert.ok(sample(body, 'botfleet_updates_received_total', 'bot="hooked"')! >= 2);
    assert.equal(sample(body, 'botfleet_updates_failed_total', 'bot="hooked"'), 0);
    assert.equal(sample(body, 'botfleet_updates_deduplicated_total', 'bot="hooked"'), 0);
    assert.equal(sample(body, 'botfleet_handler_duration_seconds_bucket', 'bot="hooked",le="+Inf"'), sample(body, 'botfleet_handler_duration_seconds_count', 'bot="hooked"'));
    assert.ok(sample(body, 'botfleet_webhook_requests_total', 'bot="hooked",code="200"')! >= 2);
    assert.equal(sample(body, 'botfleet_webhook_requests_total', 'bot="",code="404"'), 1, 'an unknown bot id is not a label value');
    assert.ok(sample(body, 'botfleet_webhook_request_duration_seconds_count')! >= 3);
    for (const name of ['botfleet_worker_cpu_percent', 'botfleet_worker_heartbeat_age_seconds', 'botfleet_worker_rss_bytes', 'botfleet_journal_pending']) {
      assert.notEqual(sample(body, name, 'bot="hooked"'), null, name);
    }
    assert.ok(sample(body, 'botfleet_worker_memory_cap_bytes')! > 0);
    assert.match(body, /^botfleet_build_info\{version="[^"]+",node="v\d+[^"]*"\} 1$/m);
    // The master's own process under the standard names (stock Node.js dashboards).
    assert.ok(sample(body, 'process_resident_memory_bytes')! > 0);
    assert.notEqual(sample(body, 'nodejs_eventloop_lag_p99_seconds'), null);
  });

  test('Telegram API errors by method and code', async () => {
    fleet.emulator.floodWait(fleet.tg('hooked'), 1500);
    assert.equal(await fleet.chat('hooked', 6, 'through the flood'), 'ok: through the flood');
    await waitFor(async () => (sample(await scrape(), 'botfleet_telegram_api_errors_total', 'bot="hooked",method="sendMessage",code="429"') ?? 0) >= 1, 5000, 'the 429 counted');
  });

  test('counters survive a worker restart', async () => {
    const before = sample(await scrape(), 'botfleet_updates_handled_total', 'bot="hooked"')!;
    const durations = sample(body, 'botfleet_handler_duration_seconds_count', 'bot="hooked"')!;
    const w = (await fleet.worker('hooked'))!;
    process.kill(w.pid!, 'SIGKILL');
    await fleet.waitWorker('hooked', (x) => x.state === 'running' && x.pid !== w.pid, 15_000, 'the replacement');
    assert.equal(await fleet.chat('hooked', 7, 'after'), 'ok: after');
    await waitFor(async () => (sample(await scrape(), 'botfleet_updates_handled_total', 'bot="hooked"') ?? 0) >= before + 1, 5000, 'the next update counted on top');
    assert.ok(sample(body, 'botfleet_handler_duration_seconds_count', 'bot="hooked"')! > durations);
  });

  test('botfleet describe: config without secrets, state history, exits with reasons, log files', async () => {
    const r = await fleet.cli(['describe', 'crasher', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const d = JSON.parse(r.stdout) as { registry: { settings: Record<string, unknown> }; status: { state: string }; exits: Array<{ reason: string }>; transitions: Array<{ to: string }>; restartWindow: { restarts: string[] }; logFiles: Array<{ file: string }> };
    assert.deepEqual(d.registry.settings, { apiKey: '[redacted]', greeting: 'hello' });
    assert.equal(d.status.state, 'backoff');
    assert.ok(d.exits.some((e) => e.reason === 'crash'));
    assert.ok(d.transitions.some((t) => t.to === 'running') && d.transitions.some((t) => t.to === 'backoff'));
    assert.ok(d.restartWindow.restarts.length >= 1);
    assert.ok(d.logFiles.some((l) => l.file.endsWith('worker_crasher.log')));
    for (const text of [r.stdout, (await fleet.cli(['describe', 'crasher'])).stdout]) {
      assert.ok(!text.includes(fleet.tg('crasher').token) && !text.includes('handler-secret-value'), 'no token, no secret setting');
    }
    const q = await fleet.cli(['describe', 'broken']);
    assert.match(q.stdout, /state: +quarantined \(handler .*not found/);
    assert.match(q.stdout, /quarantine ends: +never by itself/);
    assert.equal((await fleet.cli(['describe', 'nobody'])).code, 1);
  });

  test('botfleet status --watch redraws every second and ends on SIGINT with 0', async () => {
    const watch = spawn(process.execPath, [CLI, 'status', '--watch'], { env: fleet.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    watch.stdout.on('data', (d: Buffer) => (out += d.toString()));
    await waitFor(() => out.split('\nmaster pid ').length >= 3, 10_000, 'two tables drawn');
    assert.match(out, /hooked .* running /);
    assert.ok(!out.includes('\x1b['), 'no colour off a terminal');
    watch.kill('SIGINT');
    const [code] = (await once(watch, 'exit')) as [number];
    assert.equal(code, 0);
  });

  test('no token in the metrics', async () => {
    await scrape();
    for (const id of ['hooked', 'resting', 'broken', 'crasher']) assert.ok(!body.includes(fleet.tg(id).token), id);
  });

  test('promtool check metrics passes', { skip: promtool() ? false : 'promtool not installed (.ci/run installs Debian\'s prometheus package)' }, async () => {
    await scrape();
    const r = spawnSync(promtool()!, ['check', 'metrics'], { input: body, encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 0, `promtool: ${r.stdout}${r.stderr}`);
  });
});

test('the scrape body is written as bytes in chunks: the same text as lines joined, UTF-8 labels whole across chunk ends and growth', async () => {
  const { BodyBuilder } = await import('../master/surfaces/metrics-text.js');
  const lines = Array.from({ length: 3000 }, (_, i) => `botfleet_bot_info{bot="b${i}",name="${i % 7 === 0 ? 'Привет 🤖 bot' : 'plain'}"} 1`);
  const b = new BodyBuilder(16); // far too small: it must grow, and keep what it had
  b.text('# prom-client part\nx 1\n');
  for (let i = 0; i < lines.length; i += 3) b.push(lines.slice(i, i + 3).join('\n')); // a bot's block: lines joined
  assert.equal(b.finish().toString('utf8'), `# prom-client part\nx 1\n${lines.join('\n')}\n`);
  assert.equal(new BodyBuilder(0).finish().length, 0, 'nothing pushed: an empty body');
});

test('a bot\'s kept lines follow its values: a change, a reason moved at the same total, a bot removed and one added read as a fresh registry reads them', async () => {
  const { createMetrics } = await import('../master/surfaces/metrics.js');
  const { childStatus, newChild } = await import('../master/lifecycle/child.js');
  const { addBeat } = await import('../master/lifecycle/counters.js');
  const children = ['a', 'b', 'c'].map((id) => newChild(id, `Bot ${id}`, null));
  for (const c of children) c.state = 'running';
  children[0]!.exitsByReason = { crash: 1 };
  const sources = {
    status: () => children.map((c) => childStatus(c, 1000, 3_600_000)),
    totals: () => children.map((c): [string, typeof c.totals] => [c.botId, c.totals]),
    deadLetters: () => new Map([['gone', 2]]),
  };
  const botLines = (b: Buffer) => b.toString('utf8').split('\n').filter((l) => l.startsWith('botfleet_') && !l.startsWith('botfleet_build_info')).join('\n');
  const kept = createMetrics(sources);
  const first = botLines(await kept.scrape());
  assert.equal(botLines(await kept.scrape()), first, 'nothing changed: the same text');
  assert.match(first, /^botfleet_worker_exits_total\{bot="a",reason="crash"\} 1$/m);
  // Changes: a restart counted, the one exit now another reason (a bot removed and added again between scrapes), a handler timed, a name, a bot gone, one new.
  children[0]!.life = { ...children[0]!.life, restarts: 1 };
  children[0]!.exitsByReason = { memory: 1 };
  addBeat(children[1]!.totals, null, { messages: 1, errors: 0, telemetry: { received: 1, deduplicated: 0, handlerBuckets: [0, 1], handlerSecondsSum: 0.004, apiErrors: [['sendMessage', '429', 2]] } });
  children[1]!.name = 'Renamed "b"';
  children.splice(2, 1, newChild('d', 'Bot d', null));
  const later = botLines(await kept.scrape());
  assert.notEqual(later, first);
  assert.equal(later, botLines(await createMetrics(sources).scrape()), 'a fresh registry reads the same');
  assert.match(later, /^botfleet_worker_exits_total\{bot="a",reason="crash"\} 0$/m);
  assert.match(later, /^botfleet_worker_exits_total\{bot="a",reason="memory"\} 1$/m);
  assert.match(later, /^botfleet_handler_duration_seconds_count\{bot="b"\} 1$/m);
  assert.match(later, /^botfleet_telegram_api_errors_total\{bot="b",method="sendMessage",code="429"\} 2$/m);
  assert.match(later, /^botfleet_bot_info\{bot="b",name="Renamed \\"b\\"",mode="",username=""\} 1$/m);
  assert.doesNotMatch(later, /bot="c"/, 'a removed bot has no series');
  assert.match(later, /^botfleet_worker_restarts_total\{bot="d"\} 0$/m);
  assert.match(later, /^botfleet_dead_letters\{bot="gone"\} 2$/m);
});

test('a released body\'s memory holds the next scrape; one still held by a caller does not', async () => {
  const { createMetrics } = await import('../master/surfaces/metrics.js');
  const { childStatus, newChild } = await import('../master/lifecycle/child.js');
  const children = Array.from({ length: 300 }, (_, i) => newChild(`b${i}`, `Bot ${i}`, null));
  const m = createMetrics({ status: () => children.map((c) => childStatus(c, 1000, 3_600_000)), totals: () => children.map((c): [string, typeof c.totals] => [c.botId, c.totals]) });
  // Two callers of one scrape share its body: one release leaves it held.
  const [a, a2] = await Promise.all([m.scrape(), m.scrape()]);
  assert.equal(a.buffer, a2.buffer, 'concurrent scrapes share one body');
  const text = a.toString('utf8');
  m.release(a);
  const b = await m.scrape();
  assert.notEqual(b.buffer, a.buffer, 'a body one caller still holds is not written over');
  assert.equal(a.toString('utf8'), text);
  m.release(a2);
  m.release(b);
  const c = await m.scrape();
  assert.ok(c.buffer === a.buffer || c.buffer === b.buffer, 'a released body\'s memory is written again');
  assert.equal(c.toString('utf8').replace(/^(process|nodejs)_.*\n/gm, ''), text.replace(/^(process|nodejs)_.*\n/gm, ''), 'and reads as a fresh scrape');
  m.release(c);
  m.release(c); // a second release of the same body changes nothing
});

test('nodejs_eventloop_lag_*: the delay past the 1 s sampling period, near 0 on an idle loop, a stall\'s overshoot after one', async () => {
  const { createMetrics } = await import('../master/surfaces/metrics.js');
  const m = createMetrics({ status: () => [], totals: () => [] });
  const lag = async (key: string) => sample(String(await m.scrape()), `nodejs_eventloop_lag_${key}_seconds`)!;
  await new Promise((r) => setTimeout(r, 2300)); // two samples of an idle loop
  const idle = await lag('p50');
  assert.ok(idle >= 0 && idle < 0.3, `idle p50 ${idle} s (Node's histogram alone says ~1 s: the sampling period)`);
  await new Promise((r) => setTimeout(r, 1100)); // a first sample after the scrape's reset (Node's histogram skips the first interval after a reset)
  const t0 = Date.now();
  while (Date.now() - t0 < 1200); // a stall longer than the period: a sample falls due inside it and waits
  await new Promise((r) => setTimeout(r, 1100));
  const max = await lag('max');
  assert.ok(max >= 0.15 && max < 1.5, `max ${max} s after a 1200 ms stall`);
});

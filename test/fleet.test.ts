/**
 * End to end: the master started by the real CLI in a temporary home, real
 * worker processes, the Bot API emulator on loopback.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createFleet, FIXTURES, withFleet, type Fleet } from './helpers/fleet.js';
import { alive, waitFor } from './helpers/wait.js';
import { batchSchedulingAvailable } from '../master/lifecycle/child-process.js';

/** A process's Linux scheduling policy from /proc/<pid>/stat (field 41): 0 SCHED_OTHER, 3 SCHED_BATCH (sched(7)). */
function schedPolicy(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return Number(fields[41 - 3]);
}
const SCHED_OTHER = 0;
const SCHED_BATCH = 3;

describe('a fleet of polling and webhook bots', () => {
  let fleet: Fleet;
  before(async () => {
    fleet = await createFleet({}, { webhook: true });
    await fleet.addBot('poller', { mode: 'polling' });
    await fleet.addBot('hooked', { mode: 'webhook' });
    await fleet.addBot('fragile', { mode: 'polling', handler: path.join(FIXTURES, 'throw-on-boom.js') });
    await fleet.startMaster();
    await fleet.waitRunning(['poller', 'hooked', 'fragile']);
  });
  after(() => fleet.stop());

  test('a polling bot and a webhook bot each answer a user', async () => {
    assert.equal(await fleet.chat('poller', 11, 'hi poller'), 'hi poller');
    assert.equal(await fleet.chat('hooked', 12, 'hi hook'), 'hi hook');
    const s = await fleet.status();
    assert.equal(s.workers.find((w) => w.botId === 'hooked')?.mode, 'webhook');
    assert.equal(s.workers.find((w) => w.botId === 'poller')?.mode, 'polling');
    assert.equal(fleet.tg('hooked').webhook?.url.endsWith('/webhook/hooked'), true, 'setWebhook was called with the bot id URL');
    assert.equal(fleet.tg('poller').webhook, undefined);
  });

  test('workers run under SCHED_BATCH by default, the master under the default policy', async () => {
    const s = await fleet.status();
    const expected = batchSchedulingAvailable() ? 'batch' : 'other';
    assert.equal(s.master.workerSchedPolicy, expected);
    for (const w of s.workers) assert.equal(schedPolicy(w.pid!), expected === 'batch' ? SCHED_BATCH : SCHED_OTHER, `worker ${w.botId}`);
    assert.equal(schedPolicy(s.master.pid), SCHED_OTHER);
  });

  test('the status server answers over HTTP: status without tokens, Prometheus metrics, health', async () => {
    const status = await fleet.statusHttp('/api/workers/status');
    assert.equal(status.status, 200);
    const s = JSON.parse(status.body) as Awaited<ReturnType<Fleet['status']>>;
    assert.deepEqual(s.workers.map((w) => [w.botId, w.state]).sort(), [['fragile', 'running'], ['hooked', 'running'], ['poller', 'running']]);
    for (const id of ['poller', 'hooked', 'fragile']) assert.ok(!status.body.includes(fleet.tg(id).token), 'no token in the status');
    const metrics = await fleet.statusHttp('/metrics');
    assert.equal(metrics.status, 200);
    assert.match(metrics.body, /^botfleet_worker_state\{bot="poller",state="running"\} 1$/m);
    assert.match(metrics.body, /^botfleet_dead_letters\{bot="hooked"\} 0$/m);
    assert.match(metrics.body, /^process_resident_memory_bytes \d+/m);
    assert.equal((await fleet.statusHttp('/health')).status, 200);
  });

  test('a handler that throws on one update keeps serving the next ones', async () => {
    const tg = fleet.tg('fragile');
    const pid = (await fleet.worker('fragile'))!.pid;
    fleet.emulator.userSends(tg, 21, 'boom');
    assert.equal(await fleet.chat('fragile', 21, 'after boom'), 'ok: after boom');
    const w = await fleet.waitWorker('fragile', (w) => w.errors >= 1, 5000, 'the handler error being counted in a heartbeat');
    assert.equal(w.pid, pid, 'the worker was not restarted');
    assert.equal(w.state, 'running');
    assert.ok(!tg.sent.some((m) => m.text === 'ok: boom'));
  });

  test('a custom handler shares the worker\'s copy of the library, and its ctx.logger writes to the bot\'s log', async () => {
    assert.equal(await fleet.chat('fragile', 23, 'whoami'), 'same library: true');
    const log = path.join(fleet.home, 'logs', 'worker_fragile.log');
    await waitFor(() => fs.existsSync(log) && fs.readFileSync(log, 'utf8').includes('"msg":"whoami asked"'), 5000, 'the handler\'s log line');
    const line = fs.readFileSync(log, 'utf8').split('\n').find((l) => l.includes('whoami asked'))!;
    assert.equal((JSON.parse(line) as { botId?: string }).botId, 'fragile');
  });

  test('kill -9 of one worker: a new pid serves, the neighbour kept its pid and answered throughout', async () => {
    const victim = (await fleet.worker('poller'))!;
    const neighbour = (await fleet.worker('hooked'))!;
    process.kill(victim.pid!, 'SIGKILL');
    let answered = 0;
    const back = await waitFor(async () => {
      assert.equal(await fleet.chat('hooked', 31, `still there ${answered}`), `still there ${answered}`);
      answered++;
      const w = await fleet.worker('poller');
      return w?.state === 'running' && w.pid !== victim.pid ? w : null;
    }, 20_000, 'the killed worker replaced by a running one');
    assert.ok(answered >= 1);
    assert.equal(back.lastExit?.reason, 'crash');
    assert.equal(back.lastExit?.signal, 'SIGKILL');
    assert.equal(back.restarts, 1);
    assert.equal(await fleet.chat('poller', 32, 'back?'), 'back?');
    assert.equal((await fleet.worker('hooked'))!.pid, neighbour.pid);
    assert.equal(fleet.conflictsSeen('poller'), 0, 'no two pollers at once');
  });

  test('botfleet logs: a bot\'s log pretty-printed, or raw NDJSON; the master\'s by default', async () => {
    const raw = await fleet.cli(['logs', 'poller', '--raw', '-n', '20']);
    assert.equal(raw.code, 0, raw.stderr);
    const lines = raw.stdout.trim().split('\n').map((l) => JSON.parse(l) as { botId?: string; msg?: string });
    assert.ok(lines.length > 0 && lines.length <= 20);
    assert.ok(lines.some((l) => l.msg === 'worker ready'));
    const pretty = await fleet.cli(['logs', 'poller', '-n', '5']);
    assert.equal(pretty.code, 0, pretty.stderr);
    assert.match(pretty.stdout, /INFO/);
    assert.ok(!pretty.stdout.trim().startsWith('{'), 'pretty, not JSON');
    const master = await fleet.cli(['logs', '--raw', '-n', '50']);
    assert.ok(master.stdout.split('\n').some((l) => l.includes('"role":"master"')));
    const none = await fleet.cli(['logs', 'poller', '--raw', '-n', '0']);
    assert.equal(none.code, 0, none.stderr);
    assert.equal(none.stdout, '', '-n 0 prints no line');
    const bad = await fleet.cli(['logs', '-n', 'lots']);
    assert.equal(bad.code, 2, 'bad usage exits 2');
    assert.match(bad.stderr, /^botfleet: -n\/--lines must be a whole number >= 0, got "lots"/);
    const noArg = await fleet.cli(['dlq', 'replay']);
    assert.equal(noArg.code, 2);
    assert.match(noArg.stderr, /^botfleet: dlq replay needs a dead letter id or --bot/);
    const missing = await fleet.cli(['logs', 'nobody']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^botfleet: no log file .*worker_nobody\.log/);
  });

  test('the token never shows in status, bots list, logs, or worker argv/env', async () => {
    const tokens = ['poller', 'hooked', 'fragile'].map((id) => fleet.tg(id).token);
    const status = await fleet.cli(['status', '--json']);
    assert.equal(status.code, 0, status.stderr);
    const list = await fleet.cli(['bots', 'list', '--json']);
    assert.equal(list.code, 0, list.stderr);
    assert.equal((JSON.parse(list.stdout) as unknown[]).length, 3);
    const logsDir = path.join(fleet.home, 'logs');
    const logs = fs.readdirSync(logsDir).map((f) => fs.readFileSync(path.join(logsDir, f), 'utf8')).join('\n');
    assert.ok(logs.includes('"botId":"poller"'), 'the logs are real');
    const procs = (await fleet.status()).workers.map((w) => w.pid!).flatMap((pid) => [
      fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8'), fs.readFileSync(`/proc/${pid}/environ`, 'utf8'),
    ]);
    const db = fs.readFileSync(path.join(fleet.home, 'data', 'botfleet.db'));
    for (const t of tokens) {
      for (const [where, text] of [['status', status.stdout], ['bots list', list.stdout], ['logs', logs], ['worker argv/env', procs.join('\n')], ['database', db.toString('latin1')]] as const) {
        assert.ok(!text.includes(t), `token found in ${where}`);
        assert.ok(!text.includes(t.split(':')[1]!), `token secret part found in ${where}`);
      }
    }
  });

  test('a worker runs with a small young generation and one malloc arena (WORKER_SEMI_SPACE_MB, MALLOC_ARENA_MAX)', async () => {
    const pid = (await fleet.status()).workers.find((w) => w.botId === 'poller')!.pid!;
    assert.ok(fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes('--max-semi-space-size=2'));
    assert.ok(fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes('MALLOC_ARENA_MAX=1'));
  });
});

describe('the webhook endpoint on a live fleet', () => {
  let fleet: Fleet;
  let url: string;
  before(async () => {
    fleet = await createFleet({}, { webhook: true });
    await fleet.addBot('hooked', { mode: 'webhook' });
    await fleet.startMaster();
    await fleet.waitRunning(['hooked']);
    url = `${fleet.env.WEBHOOK_HOST}/webhook`;
  });
  after(() => fleet.stop());

  test('wrong secret 401, unknown bot 404, non-JSON 400: none reaches the worker', async () => {
    const post = (p: string, body: string, headers: Record<string, string>) => fetch(`${url}/${p}`, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } });
    const update = JSON.stringify({ update_id: 1, message: { message_id: 1, date: 0, chat: { id: 5, type: 'private' }, text: 'x' } });
    assert.equal((await post('hooked', update, { 'x-telegram-bot-api-secret-token': 'wrong' })).status, 401);
    assert.equal((await post('hooked', update, {})).status, 401);
    assert.equal((await post('nobody', update, { 'x-telegram-bot-api-secret-token': 'x' })).status, 404);
    const secret = fleet.tg('hooked').webhook!.secretToken!;
    assert.equal((await post('hooked', 'not json', { 'x-telegram-bot-api-secret-token': secret, 'content-type': 'text/plain' })).status, 400);
    assert.equal((await post('hooked', '{"no":"update_id"}', { 'x-telegram-bot-api-secret-token': secret })).status, 400);
    // A valid one goes through: proves the rejections were not a broken route.
    assert.equal((await post('hooked', update, { 'x-telegram-bot-api-secret-token': secret })).status, 200);
    // Each rejection was answered before the valid one was posted, and a rejected update is never journaled:
    // the snapshot that counts the valid update shows everything the worker was ever given.
    const w = await fleet.waitWorker('hooked', (w) => w.messages >= 1, 5000, 'the valid update counted');
    assert.equal(w.messages, 1);
    assert.equal(w.updates.received, 1, 'only the valid update reached the worker');
    assert.equal(w.errors, 0);
    assert.equal(fleet.tg('hooked').sent.filter((m) => m.chat_id === 5).length, 1);
  });
});

describe('operations', () => {
  test('botfleet stop ends the master and every worker', async () => {
    await withFleet({}, {}, async (fleet) => {
      await fleet.addBot('a');
      await fleet.addBot('b');
      await fleet.startMaster();
      const s = await fleet.waitRunning(['a', 'b']);
      const pids = [s.master.pid, ...s.workers.map((w) => w.pid!)];
      const r = await fleet.cli(['stop']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim(), 'botfleet stopped: 2 worker(s) drained');
      for (const pid of pids) assert.equal(alive(pid), false, `pid ${pid} still alive after stop`);
      assert.equal(fs.existsSync(path.join(fleet.home, 'run', 'botfleet.pid')), false);
      await waitFor(() => fleet.master!.exitCode !== null, 5000, 'the master exit being reaped');
      assert.equal(fleet.master!.exitCode, 0);
    });
  });

  test('registry changes reach a running master: add starts, settings hot-reload, disable stops, rm forgets the bot and its data', async () => {
    await withFleet({}, {}, async (fleet) => {
      await fleet.startMaster();
      await fleet.addBot('faq', { handler: 'autoreply', settings: { rules: { price: 'free' } } });
      await fleet.waitRunning(['faq'], 10_000);
      assert.equal(await fleet.chat('faq', 1, 'the price?'), 'free');
      const pid = (await fleet.worker('faq'))!.pid;
      assert.equal((await fleet.cli(['bots', 'set', 'faq', '--settings', '{"rules":{"price":"still free"}}'])).code, 0);
      await waitFor(async () => (await fleet.chat('faq', 1, 'price now?')) === 'still free', 10_000, 'the new settings answering');
      assert.equal((await fleet.worker('faq'))!.pid, pid, 'hot reload kept the worker');
      assert.equal((await fleet.cli(['bots', 'disable', 'faq'])).code, 0);
      await fleet.waitWorker('faq', (w) => w.state === 'stopped', 10_000, 'the disabled bot stopped');
      assert.equal(alive(pid!), false);
      const data = path.join(fleet.home, 'bots', 'faq');
      assert.ok(fs.existsSync(data), 'a disabled bot keeps its data');
      assert.equal((await fleet.cli(['bots', 'rm', 'faq'])).code, 0);
      await waitFor(async () => ((await fleet.status()).workers.some((w) => w.botId === 'faq') ? null : true), 10_000, 'the removed bot forgotten');
      await waitFor(() => (fs.existsSync(data) ? null : true), 5_000, 'its data directory deleted');
    });
  });

  test('WORKER_SCHED_POLICY=other starts workers under the default policy', async () => {
    await withFleet({ WORKER_SCHED_POLICY: 'other' }, {}, async (fleet) => {
      await fleet.addBot('plain');
      await fleet.startMaster();
      const s = await fleet.waitRunning(['plain']);
      assert.equal(s.master.workerSchedPolicy, 'other');
      assert.equal(schedPolicy(s.workers[0]!.pid!), SCHED_OTHER);
      assert.equal(await fleet.chat('plain', 1, 'hello'), 'hello');
    });
  });

  test('a bad env value exits 78 (EX_CONFIG) naming the variable, from start and --dry-run', async () => {
    await withFleet({ MAX_MEMORY_PER_WORKER_MB: 'abc' }, {}, async (fleet) => {
      const started = await fleet.cli(['start']);
      assert.equal(started.code, 78, 'systemd\'s RestartPreventExitStatus=78 and PM2\'s stop_exit_codes match it');
      assert.match(started.stderr, /MAX_MEMORY_PER_WORKER_MB must be a whole number, got "abc" \(BF_ERR_CONFIG\)/);
      const r = await fleet.cli(['start', '--dry-run']);
      assert.equal(r.code, 78);
      assert.match(r.stderr, /MAX_MEMORY_PER_WORKER_MB must be a whole number, got "abc"/);
      assert.equal(r.stderr.trim().split('\n').length, 1, 'one line per bad value');
    });
  });

  test('--dry-run lists what would start and flags a bad row without hiding the rest', async () => {
    await withFleet({}, {}, async (fleet) => {
      await fleet.addBot('good');
      await fleet.addBot('broken', { handler: '/nonexistent/handler.js' });
      const r = await fleet.cli(['start', '--dry-run']);
      assert.equal(r.code, 1);
      assert.match(r.stdout, /good: would start in polling mode/);
      assert.match(r.stdout, /broken: INVALID: handler file/);
    });
  });
});

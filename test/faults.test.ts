/**
 * Fault injection with real processes: each fault of one bot is detected,
 * recorded with its reason, recovered within its bound, counted, and a healthy
 * neighbour keeps its pid and keeps answering.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createFleet, FIXTURES, withFleet, type Fleet } from './helpers/fleet.js';
import { POISON_REASON } from '../worker/protocol.js';
import { alive, waitFor } from './helpers/wait.js';
import type { FleetStatus } from '../master/surfaces/status-server.js';
import type { DeadLetter } from '../master/store/dead-letters.js';

const MISBEHAVE = path.join(FIXTURES, 'misbehave.js');

/** The master's 'worker exited' lines of `bot`, in order. */
const exitsOf = (fleet: Fleet, bot: string) => masterLog(fleet).filter((l) => l.msg === 'worker exited' && l.botId === bot);

/** Lines of the master log as objects. */
function masterLog(fleet: Fleet): Array<Record<string, unknown>> {
  return fs.readFileSync(path.join(fleet.home, 'logs', 'master.log'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
}


/** `botfleet restart <id>` through the CLI: it succeeds, and a new worker (not `oldPid`) is running with lastExit `operator`. @returns its status row */
async function operatorRestart(fleet: Fleet, id: string, oldPid: number): Promise<FleetStatus['workers'][number]> {
  const r = await fleet.cli(['restart', id]);
  assert.equal(r.code, 0, r.stderr);
  const w = (await fleet.worker(id))!;
  assert.equal(w.state, 'running');
  assert.notEqual(w.pid, oldPid);
  assert.equal(w.lastExit?.reason, 'operator');
  return w;
}

describe('faults of one bot, a healthy neighbour', () => {
  let fleet: Fleet;
  before(async () => {
    // A generous quota: this suite injects many faults into one bot on purpose.
    fleet = await createFleet({ MEMORY_CHECK_INTERVAL_MS: '200', MAX_MEMORY_PER_WORKER_MB: '160', HEARTBEAT_TIMEOUT_MS: '2000', MAX_RESTARTS_PER_HOUR: '50' });
    await fleet.addBot('faulty', { handler: MISBEHAVE });
    await fleet.addBot('healthy');
    await fleet.startMaster();
    await fleet.waitRunning(['faulty', 'healthy']);
  });
  after(() => fleet.stop());

  const cases: Array<{ command: string; reason: string; boundMs: number }> = [
    { command: 'crash', reason: 'crash', boundMs: 10_000 },
    { command: 'throw-async', reason: 'crash', boundMs: 10_000 },
    { command: 'busy', reason: 'hung', boundMs: 2000 + 1000 + 10_000 },
    { command: 'leak', reason: 'memory', boundMs: 15_000 },
  ];
  for (const { command, reason, boundMs } of cases) {
    test(`"${command}" -> restarted with reason ${reason}; the neighbour is untouched`, async () => {
      const before = (await fleet.worker('faulty'))!;
      const neighbour = (await fleet.worker('healthy'))!;
      const exitsBefore = exitsOf(fleet, 'faulty').length;
      fleet.emulator.userSends(fleet.tg('faulty'), 40, command);
      let answered = 0;
      const back = await waitFor(async () => {
        assert.equal(await fleet.chat('healthy', 41, `n${answered}`), `n${answered}`);
        answered++;
        const w = await fleet.worker('faulty');
        return w && w.state === 'running' && w.pid !== before.pid ? w : null;
      }, boundMs, `bot "faulty" recovering from "${command}"`);
      assert.equal(back.lastExit?.reason, reason);
      // One restart, or two when the fault update was redelivered before its offset was
      // confirmed (it then dies once more and is dead-lettered: MAX_UPDATE_DEATHS = 2).
      assert.ok(back.restarts >= before.restarts + 1 && back.restarts <= before.restarts + 2, `restarts ${before.restarts} -> ${back.restarts}`);
      assert.equal(alive(before.pid!), false);
      assert.equal(await fleet.chat('faulty', 42, `after ${command}`), `ok: after ${command}`);
      const settled = (await fleet.worker('faulty'))!;
      // At most two exits: the fault and its one retry. A worker killed as hung with nothing in flight (no suspects: it
      // missed the 2 s heartbeat deadline on a loaded machine, CI once) is a restart of its own, not a retry.
      const exits = await waitFor(() => {
        const e = exitsOf(fleet, 'faulty').slice(exitsBefore);
        return e.length >= settled.restarts - before.restarts ? e : null;
      }, 5000, 'the exits in the master log');
      const retries = exits.filter((e) => !(e.reason === 'hung' && Number(e.suspects) === 0));
      assert.ok(retries.length >= 1 && retries.length <= 2, `a poison update is retried at most once: ${JSON.stringify(exits.map((e) => [e.reason, e.suspects]))}`);
      assert.equal(settled.state, 'running');
      const n = (await fleet.worker('healthy'))!;
      assert.equal(n.pid, neighbour.pid);
      assert.equal(n.restarts, 0);
      assert.ok(answered >= 1);
    });
  }

  test('a handler hung past the drain deadline: an operator restart kills it at the deadline', async () => {
    const before = (await fleet.worker('faulty'))!;
    fleet.emulator.userSends(fleet.tg('faulty'), 43, 'hang');
    await fleet.waitWorker('faulty', (w) => w.queueDepth >= 1, 5000, 'the hung update in flight');
    const t0 = Date.now();
    await operatorRestart(fleet, 'faulty', before.pid!);
    assert.ok(Date.now() - t0 < 3000 + 10_000, 'stopped within the drain deadline plus a start');
    assert.equal((await fleet.worker('healthy'))!.restarts, 0);
  });
});

/** A fleet of `deaf` (its worker made deaf to shutdown and SIGTERM) and `healthy`, both running; their status. */
async function deafAndHealthy(fleet: Fleet, chatId: number) {
  await fleet.addBot('deaf', { handler: MISBEHAVE });
  await fleet.addBot('healthy');
  await fleet.startMaster();
  const s = await fleet.waitRunning(['deaf', 'healthy']);
  assert.equal(await fleet.chat('deaf', chatId, 'ignore-stop'), 'deaf now');
  return s;
}

test('a worker that ignores shutdown and SIGTERM is SIGKILLed at the drain deadline', async () => {
  await withFleet({ WORKER_TIMEOUT_MS: '1500' }, {}, async (fleet) => {
    const s = await deafAndHealthy(fleet, 45);
    const deaf = s.workers.find((w) => w.botId === 'deaf')!;
    const t0 = Date.now();
    const w = await operatorRestart(fleet, 'deaf', deaf.pid!);
    assert.equal(w.lastExit?.signal, 'SIGKILL', 'it had to be killed');
    assert.ok(Date.now() - t0 >= 1500, 'the deadline was waited for');
    assert.equal(alive(deaf.pid!), false);
    assert.equal((await fleet.worker('healthy'))!.pid, s.workers.find((x) => x.botId === 'healthy')!.pid);
  });
});

test('botfleet stop shows the drain and names the bot it had to kill', async () => {
  await withFleet({ WORKER_TIMEOUT_MS: '4000' }, {}, async (fleet) => {
    const s = await deafAndHealthy(fleet, 47);
    const r = await fleet.cli(['stop']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^draining 2 worker\(s\) \(deadline WORKER_TIMEOUT_MS = 4000 ms, then SIGKILL\)$/m);
    assert.match(r.stderr, /^draining: 1 of 2 worker\(s\) left \(deaf\)$/m, 'the healthy one drained, the deaf one is named');
    assert.equal(r.stdout.trim(), 'botfleet stopped: 1 worker(s) drained, 1 killed at the drain deadline (deaf)');
    for (const w of s.workers) assert.equal(alive(w.pid!), false);
  });
});

test('a second SIGINT forces the stop: the deaf worker is killed at once, exit 130', async () => {
  await withFleet({ WORKER_TIMEOUT_MS: '30000' }, {}, async (fleet) => {
    await fleet.addBot('deaf', { handler: MISBEHAVE });
    await fleet.startMaster();
    const pid = (await fleet.waitRunning(['deaf'])).workers[0]!.pid!;
    assert.equal(await fleet.chat('deaf', 46, 'ignore-stop'), 'deaf now');
    const t0 = Date.now();
    fleet.master!.kill('SIGINT');
    await fleet.waitWorker('deaf', (w) => w.state === 'draining', 5000, 'the worker draining after the first SIGINT');
    fleet.master!.kill('SIGINT');
    await waitFor(() => fleet.master!.exitCode !== null, 5000, 'the master exiting on the second SIGINT');
    assert.equal(fleet.master!.exitCode, 130);
    await waitFor(() => !alive(pid), 5000, 'the deaf worker gone');
    assert.ok(Date.now() - t0 < 30_000, 'well before the drain deadline');
  });
});

describe('restart intensity', () => {
  let fleet: Fleet;
  let marker: string;
  before(async () => {
    fleet = await createFleet({ MAX_RESTARTS_PER_HOUR: '3', RESTART_BACKOFF_MS: '200', RESTART_COOLDOWN_MS: '2000' });
    // In the bot's own data directory: under the permission model a handler reads nothing else of the home.
    marker = path.join(fleet.home, 'bots', 'looper', 'crash-on-boot');
    fs.mkdirSync(path.dirname(marker), { recursive: true });
    fs.writeFileSync(marker, '');
    await fleet.addBot('looper', { handler: MISBEHAVE, settings: { crashOnBootIfExists: marker } });
    await fleet.addBot('healthy');
    await fleet.startMaster();
  });
  after(() => fleet.stop());

  test('a crash loop ends quarantined after the quota with growing backoff; restart <bot> brings it back', async () => {
    const q = await fleet.waitWorker('looper', (w) => w.state === 'quarantined', 20_000, 'the crash-looping bot quarantined');
    assert.equal(q.restartsLastHour, 3);
    assert.ok(q.quarantinedUntil !== null, 'shows when it will be tried again');
    assert.match(q.stateReason ?? '', /3 restarts within 3600 s/);
    const delays = masterLog(fleet).filter((l) => l.botId === 'looper' && l.to === 'backoff').map((l) => Number(/restart in (\d+) ms/.exec(String(l.reason))?.[1]));
    assert.deepEqual(delays, [0, 200, 400]);
    assert.equal((await fleet.worker('healthy'))!.state, 'running', 'the budget is per bot');
    fs.rmSync(marker);
    const r = await fleet.cli(['restart', 'looper']);
    assert.equal(r.code, 0, r.stderr);
    await fleet.waitRunning(['looper'], 10_000);
    assert.equal(await fleet.chat('looper', 50, 'alive'), 'ok: alive');
  });
});

describe('master lifecycle', () => {
  test('master SIGKILLed with workers alive, then started again: old workers ended, each bot polled once', async () => {
    await withFleet({ WORKER_TIMEOUT_MS: '30000' }, {}, async (fleet) => {
      await fleet.addBot('a', { handler: MISBEHAVE });
      await fleet.addBot('b');
      await fleet.startMaster();
      const s1 = await fleet.waitRunning(['a', 'b']);
      // an update stuck in a's handler keeps that worker draining for 30 s after its master is gone
      fleet.emulator.userSends(fleet.tg('a'), 60, 'hang');
      await fleet.waitWorker('a', (w) => w.queueDepth >= 1, 5000, 'the hung update in flight');
      const old = s1.workers.map((w) => w.pid!);
      fleet.master!.kill('SIGKILL');
      await waitFor(() => fleet.master!.signalCode !== null, 5000, 'the master dying');
      assert.ok(old.some(alive), 'a worker outlived its master (the zombie to clean)');
      const t0 = Date.now();
      await fleet.startMaster();
      const s2 = await fleet.waitRunning(['a', 'b']);
      for (const pid of old) assert.equal(alive(pid), false, `old worker ${pid} still alive`);
      assert.ok(Date.now() - t0 < 20_000, 'cleaned well before the 30 s drain');
      assert.ok(masterLog(fleet).some((l) => l.msg === 'ended a worker left by an earlier master'));
      assert.deepEqual(s2.workers.map((w) => w.pid).filter((p) => old.includes(p!)), []);
      assert.equal(await fleet.chat('a', 61, 'fresh'), 'ok: fresh');
      assert.equal(await fleet.chat('b', 62, 'fresh'), 'fresh');
      assert.equal(fleet.conflictsSeen('a') + fleet.conflictsSeen('b'), 0, 'no 409 seen by a worker: never two pollers');
    });
  });

  test('SIGTERM with updates in flight: they finish and are acknowledged, exit 0, nothing left', async () => {
    await withFleet({}, { webhook: true }, async (fleet) => {
      await fleet.addBot('hook', { handler: MISBEHAVE, mode: 'webhook' });
      await fleet.addBot('poll', { handler: MISBEHAVE });
      await fleet.startMaster();
      const s = await fleet.waitRunning(['hook', 'poll']);
      fleet.emulator.userSends(fleet.tg('hook'), 70, 'slow');
      fleet.emulator.userSends(fleet.tg('poll'), 71, 'slow');
      await waitFor(async () => (await fleet.status()).workers.every((w) => w.queueDepth >= 1), 5000, 'both slow updates in flight');
      fleet.master!.kill('SIGTERM');
      await waitFor(() => fleet.master!.exitCode !== null, 15_000, 'the master exiting');
      assert.equal(fleet.master!.exitCode, 0);
      assert.ok(fleet.tg('hook').sent.some((m) => m.text === 'slow done'));
      assert.ok(fleet.tg('poll').sent.some((m) => m.text === 'slow done'));
      assert.equal(fleet.tg('hook').pending.length, 0, 'the webhook update was answered 200');
      assert.equal(fleet.tg('poll').pending.length, 0, 'the polled update was confirmed');
      for (const w of s.workers) assert.equal(alive(w.pid!), false);
    });
  });

  test('SIGUSR2 under steady traffic: every worker gets a new pid, no update lost or answered twice', async () => {
    await withFleet({}, {}, async (fleet) => {
      const ids = ['r1', 'r2', 'r3'];
      for (const id of ids) await fleet.addBot(id);
      await fleet.startMaster();
      const s1 = await fleet.waitRunning(ids);
      let sending = true;
      const sent: Array<[string, string]> = [];
      const traffic = (async () => {
        for (let i = 0; sending; i++) {
          for (const id of ids) {
            const text = `m${i}-${id}`;
            fleet.emulator.userSends(fleet.tg(id), 80, text);
            sent.push([id, text]);
          }
          await new Promise((r) => setTimeout(r, 30));
        }
      })();
      await new Promise((r) => setTimeout(r, 300));
      fleet.master!.kill('SIGUSR2');
      await waitFor(async () => {
        const s = await fleet.status();
        return s.workers.every((w) => w.state === 'running' && !s1.workers.some((o) => o.pid === w.pid));
      }, 30_000, 'every worker replaced');
      await new Promise((r) => setTimeout(r, 300));
      sending = false;
      await traffic;
      for (const [id, text] of sent) await fleet.emulator.waitForSent(fleet.tg(id), (m) => m.text === text, 10_000, `the reply to ${text}`);
      for (const id of ids) {
        const texts = fleet.tg(id).sent.map((m) => m.text);
        assert.equal(texts.length, new Set(texts).size, `bot ${id} answered an update twice`);
        assert.equal(texts.length, sent.filter(([b]) => b === id).length);
      }
      const s2 = await fleet.status();
      assert.ok(s2.workers.every((w) => w.lastExit?.reason === 'rolling-restart'));
      assert.equal(ids.reduce((n, id) => n + fleet.conflictsSeen(id), 0), 0, 'no worker saw a 409');
    });
  });

  test('capacity: the excess is pending, and starts when a bot is disabled', async () => {
    await withFleet({ MAX_TOTAL_WORKERS: '2' }, {}, async (fleet) => {
      for (const id of ['c1', 'c2', 'c3']) await fleet.addBot(id);
      await fleet.startMaster();
      await fleet.waitRunning(['c1', 'c2']);
      const w3 = (await fleet.worker('c3'))!;
      assert.equal(w3.state, 'pending');
      assert.match(w3.stateReason ?? '', /over capacity \(2 workers\)/);
      assert.equal((await fleet.status()).master.capacity, 2);
      assert.equal((await fleet.cli(['bots', 'disable', 'c1'])).code, 0);
      await fleet.waitRunning(['c2', 'c3'], 10_000);
      assert.equal((await fleet.worker('c1'))!.state, 'stopped');
      assert.equal(await fleet.chat('c3', 90, 'finally'), 'finally');
    });
  });
});

describe('dead-letter queue', () => {
  test('a poison webhook update is dead-lettered after two worker deaths, listed without its text, and replayed once the bot is fixed', async () => {
    await withFleet({ MAX_RESTARTS_PER_HOUR: '50' }, { webhook: true }, async (fleet) => {
      await fleet.addBot('poisoned', { mode: 'webhook', handler: MISBEHAVE });
      await fleet.startMaster();
      const before = (await fleet.waitRunning(['poisoned'])).workers[0]!;
      const tg = fleet.tg('poisoned');
      fleet.emulator.userSends(tg, 77, 'crash');
      const list = async () => JSON.parse((await fleet.cli(['dlq', 'list', '--json'])).stdout) as DeadLetter[];
      const [dl] = await waitFor(async () => {
        const l = await list();
        return l.length === 1 ? l : null;
      }, 20_000, 'the poison update reaching the dead-letter queue');
      assert.deepEqual([dl!.botId, dl!.kind, dl!.reason], ['poisoned', 'message', POISON_REASON]);
      const sick = await fleet.waitWorker('poisoned', (w) => w.state === 'running', 10_000, 'the bot running again');
      assert.equal(sick.restarts, before.restarts + 2, 'two deaths, then the update was answered 200 without a third');
      const text = (await fleet.cli(['dlq', 'list', 'poisoned'])).stdout;
      assert.match(text, new RegExp(`${dl!.id}\\s+poisoned\\s+${dl!.updateId}\\s+message`));
      assert.ok(!text.includes('crash'), 'a listing never shows message text');
      assert.match((await fleet.statusHttp('/metrics')).body, /^botfleet_dead_letters\{bot="poisoned"\} 1$/m);

      // Fixed: the same bot with a handler that survives the update; the replay is answered and the row removed.
      assert.equal((await fleet.cli(['bots', 'set', 'poisoned', '--handler', 'echo'])).code, 0);
      await fleet.waitWorker('poisoned', (w) => w.state === 'running' && w.pid !== sick.pid, 10_000, 'the bot restarted with the echo handler');
      const r = await fleet.cli(['dlq', 'replay', '--bot', 'poisoned']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /replayed 1/);
      await waitFor(() => tg.sent.some((m) => m.chat_id === 77 && m.text === 'crash'), 5000, 'the echo of the replayed update');
      assert.deepEqual(await list(), []);
      assert.match((await fleet.statusHttp('/metrics')).body, /^botfleet_dead_letters\{bot="poisoned"\} 0$/m);
      const again = await fleet.cli(['dlq', 'replay', String(dl!.id)]);
      assert.equal(again.code, 1);
      assert.match(again.stderr, new RegExp(`no dead letter with id ${dl!.id}`));
    });
  });
});

describe('dead-letter queue, polling', () => {
  test('a poison update of a polling bot reaches the queue through the worker that skips it', async () => {
    await withFleet({ MAX_RESTARTS_PER_HOUR: '50' }, {}, async (fleet) => {
      await fleet.addBot('pollpoison', { mode: 'polling', handler: MISBEHAVE });
      await fleet.startMaster();
      const before = (await fleet.waitRunning(['pollpoison'])).workers[0]!;
      // 'crash' exits inside the handler, before the next getUpdates confirms the offset: Telegram hands it out again.
      fleet.emulator.userSends(fleet.tg('pollpoison'), 78, 'crash');
      const rows = await waitFor(async () => {
        const l = JSON.parse((await fleet.cli(['dlq', 'list', 'pollpoison', '--json'])).stdout) as DeadLetter[];
        return l.length === 1 ? l : null;
      }, 20_000, 'the polled poison update reaching the dead-letter queue');
      assert.deepEqual([rows[0]!.kind, rows[0]!.reason], ['message', POISON_REASON]);
      const w = await fleet.waitWorker('pollpoison', (w) => w.state === 'running', 10_000, 'the bot running again');
      assert.equal(w.restarts, before.restarts + 2);
      assert.equal(await fleet.chat('pollpoison', 79, 'still here'), 'ok: still here');
    });
  });
});

describe('409 Conflict', () => {
  test('another poller on the token: shown as the last error, retried with backoff, not a crash', async () => {
    await withFleet({}, {}, async (fleet) => {
      const tg = await fleet.addBot('contested');
      await fleet.startMaster();
      const before = (await fleet.waitRunning(['contested'])).workers[0]!;
      // A second poller elsewhere: each of its calls ends the worker's pending long poll with 409.
      const { Api } = await import('node-telegram-bot-api');
      const intruder = new Api(tg.token, { apiRoot: fleet.emulator.apiRoot, maxRetries: 0 });
      const stopAt = Date.now() + 2500;
      while (Date.now() < stopAt) {
        await intruder.getUpdates({ timeout: 0 }).catch(() => undefined);
        await new Promise((r) => setTimeout(r, 100));
      }
      const w = await fleet.waitWorker('contested', (w) => w.lastError?.code === '409', 5000, 'the 409 shown as the worker\'s last error');
      assert.equal(w.pid, before.pid, 'not restarted');
      assert.equal(w.restarts, 0);
      assert.equal(w.state, 'running');
      assert.ok(tg.conflicts >= 1);
      assert.ok(fleet.conflictsSeen('contested') >= 1, 'the detector the other tests rely on sees a real conflict');
      const calls = tg.conflicts;
      assert.equal(await fleet.chat('contested', 95, 'after the intruder left'), 'after the intruder left');
      assert.ok(calls <= 25, `backed off rather than hammering (${calls} conflicts)`);
    });
  });
});

describe('do-not-restart exits', () => {
  test('a token Telegram rejects (401): quarantined with the reason, not restarted', async () => {
    await withFleet({}, {}, async (fleet) => {
      await fleet.addBot('good');
      // A well-formed token the Bot API does not know: Telegram answers 401 Unauthorized.
      const stranger = `${fleet.tg('good').id + 1}:${'x'.repeat(35)}`;
      const r = await fleet.cli(['bots', 'add', '--id', 'revoked', '--name', 'revoked', '--token', '-'], stranger);
      assert.equal(r.code, 0, r.stderr);
      await fleet.startMaster();
      const w = await fleet.waitWorker('revoked', (w) => w.state === 'quarantined', 15_000, 'the bot with a rejected token quarantined');
      assert.match(w.stateReason ?? '', /401/);
      assert.equal(w.quarantinedUntil, null, 'only an operator brings it back');
      assert.equal(w.restarts, 0);
      await fleet.waitRunning(['good']);
      assert.equal(await fleet.chat('good', 99, 'unaffected'), 'unaffected');
    });
  });

  test('a 401 at setWebhook: quarantined (config), and still quarantined with its reason after a master restart', async () => {
    await withFleet({}, { webhook: true }, async (fleet) => {
      await fleet.addBot('good', { mode: 'webhook' });
      const stranger = `${fleet.tg('good').id + 7}:${'y'.repeat(35)}`;
      const r = await fleet.cli(['bots', 'add', '--id', 'hooked401', '--name', 'hooked401', '--mode', 'webhook', '--token', '-'], stranger);
      assert.equal(r.code, 0, r.stderr);
      await fleet.startMaster();
      const w = await fleet.waitWorker('hooked401', (x) => x.state === 'quarantined', 15_000, 'quarantined at setWebhook');
      assert.match(w.stateReason ?? '', /401/);
      assert.equal(w.restartsLastHour, 0, 'no restart budget spent');
      assert.equal((await fleet.cli(['stop'])).code, 0);
      await waitFor(() => (fleet.master!.exitCode !== null ? true : null), 20_000, 'the master stopped');
      await fleet.startMaster();
      await fleet.waitRunning(['good']);
      const again = await fleet.waitWorker('hooked401', (x) => x.state === 'quarantined', 15_000, 'still quarantined');
      assert.match(again.stateReason ?? '', /401/, 'with its reason');
      assert.match(again.stateReason ?? '', /before the master restarted/);
    });
  });

  test('a handler the bot\'s uid cannot read: bots add warns at once; the bot is quarantined (config), no restart budget spent', { skip: process.getuid?.() === 0 ? false : 'needs root (per-bot uids)' }, async () => {
    const closed = fs.mkdtempSync(path.join(os.tmpdir(), 'botfleet-closed-'));
    fs.chmodSync(closed, 0o700);
    fs.copyFileSync(MISBEHAVE, path.join(closed, 'handler.js'));
    try {
      await withFleet({}, {}, async (fleet) => {
        await fleet.addBot('open');
        const tg = fleet.emulator.createBot('shut_bot');
        const r = await fleet.cli(['bots', 'add', '--id', 'shut', '--name', 'shut', '--handler', path.join(closed, 'handler.js'), '--token', '-'], tg.token);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stderr, /warning: the bot's own uid cannot read its handler: .* is closed to other users/);
        await fleet.startMaster();
        await fleet.waitRunning(['open']);
        const w = await fleet.waitWorker('shut', (x) => x.state === 'quarantined', 15_000, 'quarantined before any fork');
        assert.match(w.stateReason ?? '', /cannot read its handler/);
        assert.equal(w.restartsLastHour, 0);
        assert.equal(w.restarts, 0);
        assert.equal(w.pid, null);
      });
    } finally {
      fs.rmSync(closed, { recursive: true, force: true });
    }
  });

  test("the bots API lists a bot whose uid cannot read its handler: the master warns when the list is applied, and quarantines it (config)", { skip: process.getuid?.() === 0 ? false : 'needs root (per-bot uids)' }, async () => {
    let doc = '{"bots":[]}';
    const api = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(doc));
    await new Promise<void>((r) => api.listen(0, '127.0.0.1', r));
    try {
      await withFleet({ BOTS_API_URL: `http://127.0.0.1:${(api.address() as AddressInfo).port}/bots`, BOTS_API_POLL_MS: '500' }, {}, async (fleet) => {
        // The API may name only handlers inside the home: one there, in a directory closed to other users.
        const closed = path.join(fleet.home, 'closed-handlers');
        fs.mkdirSync(closed, { mode: 0o700 });
        fs.copyFileSync(MISBEHAVE, path.join(closed, 'handler.js'));
        const tg = fleet.emulator.createBot('apishut_bot');
        doc = JSON.stringify({ bots: [{ id: 'apishut', token: tg.token, handler: 'closed-handlers/handler.js' }] });
        await fleet.startMaster();
        const w = await fleet.waitWorker('apishut', (x) => x.state === 'quarantined', 15_000, 'quarantined before any fork');
        assert.match(w.stateReason ?? '', /cannot read its handler/);
        assert.equal(w.restarts, 0);
        const warned = fs.readFileSync(path.join(fleet.home, 'logs', 'master.log'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { msg?: string; botId?: string; warning?: string })
          .find((l) => l.msg === 'bots API bot cannot run as configured' && l.botId === 'apishut');
        assert.match(warned?.warning ?? '', /the bot's own uid cannot read its handler: .* is closed to other users/);
      });
    } finally {
      api.closeAllConnections();
      await new Promise((r) => api.close(r));
    }
  });
});

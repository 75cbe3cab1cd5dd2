/**
 * The lifecycle as seen from outside: exit reasons told apart (an unasked exit 0 is
 * `exited`, exit 78 is `config`), rolling restarts that skip bots which will not run
 * and coalesce when asked for again, and a master log that keeps its last line.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { FIXTURES, withFleet, type Fleet } from './helpers/fleet.js';
import { waitFor } from './helpers/wait.js';

const MISBEHAVE = path.join(FIXTURES, 'misbehave.js');
const masterLog = (fleet: Fleet) => fs.readFileSync(path.join(fleet.home, 'logs', 'master.log'), 'utf8');

describe('exit reasons', () => {
  test('an unasked exit 0 is recorded as exited and restarted; exit 78 as config and quarantined', async () => {
    await withFleet({}, {}, async (fleet) => {
      await fleet.addBot('quitter', { handler: MISBEHAVE });
      await fleet.startMaster();
      const first = (await fleet.waitRunning(['quitter'])).workers[0]!;
      fleet.emulator.userSends(fleet.tg('quitter'), 1, 'exit0');
      const back = await fleet.waitWorker('quitter', (w) => w.state === 'running' && w.pid !== first.pid, 10_000, 'restart after exit 0');
      assert.equal(back.lastExit?.reason, 'exited');
      assert.equal(back.lastExit?.code, 0);
      fleet.emulator.userSends(fleet.tg('quitter'), 2, 'exit78');
      const q = await fleet.waitWorker('quitter', (w) => w.state === 'quarantined', 10_000, 'quarantine after exit 78');
      assert.equal(q.lastExit?.reason, 'config');
      assert.equal(q.lastExit?.code, 78);
      assert.equal(q.quarantinedUntil, null, 'no retry time: an operator must act');
      assert.equal(q.lastExit?.errorCode, undefined, 'a bare exit 78 sent no cause');
    });
  });

  test("a handler that cannot load (missing, or throwing at import): config, quarantined at once with the cause and its catalog code", async () => {
    await withFleet({}, {}, async (fleet) => {
      await fleet.addBot('missing', { handler: path.join(FIXTURES, 'not-there.js') });
      await fleet.addBot('throws', { handler: path.join(FIXTURES, 'throw-at-load.js') });
      await fleet.addBot('fine', { handler: MISBEHAVE });
      await fleet.startMaster();
      const gone = await fleet.waitWorker('missing', (w) => w.state === 'quarantined', 15_000, 'quarantine of a missing handler');
      assert.match(gone.stateReason ?? '', /handler .*not-there\.js.* not found/);
      assert.equal(gone.quarantinedUntil, null, 'do not restart: an operator must act');
      assert.equal(gone.restarts, 0, 'never retried');
      const q = await fleet.waitWorker('throws', (w) => w.state === 'quarantined', 15_000, 'quarantine of a handler that throws at load');
      assert.equal(q.lastExit?.reason, 'config');
      assert.equal(q.lastExit?.code, 78);
      assert.equal(q.lastExit?.errorCode, 'BF_ERR_HANDLER_LOAD');
      assert.match(q.stateReason ?? '', /refuses to load/);
      assert.equal(q.quarantinedUntil, null);
      await fleet.waitRunning(['fine']);
      const lines = masterLog(fleet).split('\n').filter(Boolean).map((l) => JSON.parse(l) as { msg?: string; botId?: string; code?: string });
      assert.equal(lines.find((l) => l.msg === 'worker reported a fatal error' && l.botId === 'throws')?.code, 'BF_ERR_HANDLER_LOAD');
      assert.equal(lines.find((l) => l.botId === 'missing' && l.code !== undefined)?.code, 'BF_ERR_HANDLER_LOAD');
    });
  });
});

describe('rolling restarts', () => {
  test('a rolling restart skips quarantined bots, finishes, and answers with its summary', async () => {
    await withFleet({ MAX_RESTARTS_PER_HOUR: '1', RESTART_BACKOFF_MS: '10' }, {}, async (fleet) => {
      for (const id of ['l1', 'l2']) {
        const marker = path.join(fleet.home, 'bots', id, 'crash-on-boot');
        fs.mkdirSync(path.dirname(marker), { recursive: true });
        fs.writeFileSync(marker, '');
        await fleet.addBot(id, { handler: MISBEHAVE, settings: { crashOnBootIfExists: marker } });
      }
      await fleet.addBot('r1');
      await fleet.addBot('r2');
      await fleet.startMaster();
      await fleet.waitRunning(['r1', 'r2']);
      for (const id of ['l1', 'l2']) await fleet.waitWorker(id, (w) => w.state === 'quarantined', 15_000, `${id} quarantined`);
      const t0 = Date.now();
      const r = await fleet.cli(['restart']);
      const ms = Date.now() - t0;
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /rolling restart done: 2 restarted, 2 skipped \(l1: quarantined, l2: quarantined\)|rolling restart done: 2 restarted, 2 skipped \(l2: quarantined, l1: quarantined\)/);
      assert.ok(ms < 20_000, `the roll took ${ms} ms: it did not wait on the quarantined bots`);
      const s = await fleet.status();
      for (const id of ['r1', 'r2']) assert.equal(s.workers.find((w) => w.botId === id)?.lastExit?.reason, 'rolling-restart');
    });
  });
});

describe('the master log', () => {
  test('ends with the stop line after botfleet stop', async () => {
    await withFleet({}, {}, async (fleet) => {
      await fleet.addBot('a');
      await fleet.startMaster();
      await fleet.waitRunning(['a']);
      const r = await fleet.cli(['stop']);
      assert.equal(r.code, 0, r.stderr);
      await waitFor(() => fleet.master!.exitCode !== null, 10_000, 'the master exiting');
      const last = masterLog(fleet).trim().split('\n').pop()!;
      assert.equal((JSON.parse(last) as { msg: string }).msg, 'master stopped');
    });
  });
});

/**
 * A bot cannot hurt the fleet (issue: the master distrusts its children, bots are
 * isolated): a hostile handler fixture attacks the master's channel, floods its
 * output, probes what it can reach and leaves grandchildren behind, with real
 * processes, real uids (the suite runs as root in CI) and the emulator on loopback.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { blockingPath } from '../master/host/isolation.js';
import { WORKER_ENTRY } from '../master/host/worker-entry.js';
import { describe, test } from 'node:test';
import { FIXTURES, withFleet, type Fleet } from './helpers/fleet.js';
import { alive, waitFor } from './helpers/wait.js';

const HOSTILE = path.join(FIXTURES, 'hostile.js');
const isRoot = process.getuid?.() === 0;
/** Another uid can only run our code if the checkout is open to other users (a clone under /root is not). */
const codeClosed = [WORKER_ENTRY, HOSTILE, os.tmpdir()].map(blockingPath).find((p) => p !== null);
const uidSkip = !isRoot ? 'needs root (CI runs as root)' : codeClosed ? `the checkout is closed to other users at ${codeClosed}` : false;
const NOBODY = 65534;

/** CPU seconds (user + system) `pid` has used, from /proc/<pid>/stat (clock ticks at 100 Hz). */
function cpuSeconds(pid: number): number {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

/** Resident memory of `pid` in bytes (VmRSS). */
function rssBytes(pid: number): number {
  const line = fs.readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'))!;
  return Number(line.split(/\s+/)[1]) * 1024;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Round trips of `n` chats with bot `id` (ms each). */
async function roundTrips(fleet: Fleet, id: string, chatId: number, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    assert.equal(await fleet.chat(id, chatId, `rt${i}`), `rt${i}`);
    out.push(performance.now() - t0);
  }
  return out;
}

describe('the master distrusts its children', () => {
  test('garbage on the channel kills only that worker, with reason protocol; a crash loop of it ends quarantined', async () => {
    await withFleet({ MAX_RESTARTS_PER_HOUR: '2' }, {}, async (fleet) => {
      await fleet.addBot('hostile', { handler: HOSTILE });
      await fleet.addBot('looper', { handler: HOSTILE, settings: { garbageOnBoot: true } });
      await fleet.addBot('neighbour');
      await fleet.startMaster();
      const s = await fleet.waitRunning(['hostile', 'neighbour']);
      const before = s.workers.find((w) => w.botId === 'hostile')!;
      const neighbour = s.workers.find((w) => w.botId === 'neighbour')!;

      // The old attack, garbage written into the master -> worker channel, reaches no parser of the master.
      assert.equal(await fleet.chat('hostile', 1, 'garbage-fd3'), 'wrote fd3');
      assert.equal(await fleet.chat('hostile', 1, 'still there?'), 'ok: still there?');
      assert.equal((await fleet.worker('hostile'))!.pid, before.pid);

      fleet.emulator.userSends(fleet.tg('hostile'), 2, 'garbage');
      const back = await fleet.waitWorker('hostile', (w) => w.state === 'running' && w.pid !== before.pid, 15_000, 'the hostile bot restarted');
      assert.equal(back.lastExit?.reason, 'protocol');
      assert.equal(fleet.master!.exitCode, null, 'the master lives');
      assert.equal(await fleet.chat('neighbour', 3, 'hello'), 'hello');
      assert.equal((await fleet.worker('neighbour'))!.pid, neighbour.pid, 'the neighbour kept its worker');

      const q = await fleet.waitWorker('looper', (w) => w.state === 'quarantined', 20_000, 'the protocol crash loop quarantined');
      assert.equal(q.lastExit?.reason, 'protocol');
      assert.match(q.stateReason ?? '', /protocol/);
      const log = fs.readFileSync(path.join(fleet.home, 'logs', 'master.log'), 'utf8');
      assert.match(log, /protocol violation: killing worker/);
      const metrics = (await fleet.statusHttp('/metrics')).body;
      assert.match(metrics, /^botfleet_worker_exits_total\{bot="hostile",reason="protocol"\} [1-9]/m);
      assert.match(metrics, /^# TYPE botfleet_worker_restarts_total counter$/m);
      assert.match(metrics, /^botfleet_build_info\{version="[^"]+",node="v\d+/m);
    });
  });

  test('64 MiB of stdout without a newline: the neighbour keeps its pace, the master its memory', async () => {
    await withFleet({}, { webhook: true }, async (fleet) => {
      await fleet.addBot('noisy', { handler: HOSTILE, mode: 'polling' });
      await fleet.addBot('neighbour', { mode: 'webhook' });
      await fleet.startMaster();
      const s = await fleet.waitRunning(['noisy', 'neighbour']);
      const masterPid = s.master.pid;
      await roundTrips(fleet, 'neighbour', 10, 5); // warm-up
      const quiet = median(await roundTrips(fleet, 'neighbour', 10, 21));
      const cpu0 = cpuSeconds(masterPid);
      const tg = fleet.tg('noisy');
      const sentBefore = tg.sent.length;
      fleet.emulator.userSends(tg, 20, 'flood-stdout 64');
      const during: number[] = [];
      let peakRss = 0;
      while (!tg.sent.slice(sentBefore).some((m) => m.text === 'flooded') && during.length < 200) {
        during.push(...(await roundTrips(fleet, 'neighbour', 11, 3)));
        peakRss = Math.max(peakRss, rssBytes(masterPid));
      }
      await fleet.emulator.waitForSent(tg, (m) => m.text === 'flooded', 30_000, 'the flood finished');
      const cpu = cpuSeconds(masterPid) - cpu0;
      const busy = median(during);
      // 2x, with a 25 ms floor: on a loaded 2-core machine a few ms of jitter is not the flood's doing.
      assert.ok(busy <= Math.max(2 * quiet, quiet + 25), `neighbour p50 ${busy.toFixed(1)} ms during the flood vs ${quiet.toFixed(1)} ms before`);
      assert.ok(cpu < 5, `the master spent ${cpu.toFixed(2)} s of CPU on 64 MiB (was 72 s with the old splitter)`);
      assert.ok(peakRss < 250 * 1024 * 1024, `master RSS ${Math.round(peakRss / 1048576)} MB stays under 250 MB`);
      const logLines = fs.readFileSync(path.join(fleet.home, 'logs', 'worker_noisy.log'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { truncated?: boolean; msg?: string });
      const cut = logLines.filter((l) => l.truncated === true);
      assert.equal(cut.length, 1, 'the 64 MiB line is kept once, cut and marked');
      assert.ok(cut[0]!.msg!.length <= 16 * 1024);
      assert.equal((await fleet.worker('noisy'))!.restarts, 0, 'output alone is no fault');
    });
  });

  test('a flood of begin messages is a protocol violation, not master memory', async () => {
    await withFleet({}, {}, async (fleet) => {
      await fleet.addBot('flooder', { handler: HOSTILE });
      await fleet.addBot('neighbour');
      await fleet.startMaster();
      const s = await fleet.waitRunning(['flooder', 'neighbour']);
      const before = s.workers.find((w) => w.botId === 'flooder')!;
      fleet.emulator.userSends(fleet.tg('flooder'), 30, 'flood-begin');
      const back = await fleet.waitWorker('flooder', (w) => w.pid !== before.pid && w.lastExit !== null, 15_000, 'the flooder killed');
      assert.equal(back.lastExit?.reason, 'protocol');
      assert.ok(rssBytes(s.master.pid) < 250 * 1024 * 1024, 'the master did not swallow the flood');
      assert.equal(await fleet.chat('neighbour', 31, 'fine'), 'fine');
    });
  });

  test('forged dead letters (updates it never received) are a protocol violation, and the registry does not grow', async () => {
    await withFleet({}, {}, async (fleet) => {
      await fleet.addBot('forger', { handler: HOSTILE });
      await fleet.startMaster();
      const s = await fleet.waitRunning(['forger']);
      const before = s.workers[0]!;
      const dbFile = path.join(fleet.home, 'data', 'botfleet.db');
      const sent = fleet.emulator.userSends(fleet.tg('forger'), 32, 'forge-dlq');
      const back = await fleet.waitWorker('forger', (w) => w.pid !== before.pid && w.lastExit !== null, 15_000, 'the forger killed');
      assert.equal(back.lastExit?.reason, 'protocol');
      const list = await fleet.cli(['dlq', 'list', '--json']);
      assert.equal(list.code, 0, list.stderr);
      // The real update forges again in the next worker: after a second solo death it is dead-lettered as poison (rightly); a forged id never is.
      const letters = JSON.parse(list.stdout) as Array<{ updateId: number }>;
      assert.deepEqual(letters.filter((d) => d.updateId !== sent.update_id), [], 'no forged dead letter was written');
      assert.ok(fs.existsSync(dbFile));
    });
  });
});

describe('bots are isolated from each other and from the master', () => {
  /** Run the probe in bot `hostile` against the neighbour's worker. */
  async function probe(fleet: Fleet): Promise<Record<string, string>> {
    const n = (await fleet.worker('neighbour'))!;
    return JSON.parse(await fleet.chat('hostile', 40, `probe ${n.pid}`)) as Record<string, string>;
  }
  const secrets = ['key', 'db', 'secret', 'masterEnviron', 'neighbourEnviron', 'neighbourMem', 'otherLog', 'writeHome', 'controlToken'];

  test('per-bot uids alone (WORKER_ISOLATION=uid, a root master): nothing of the master or a neighbour is reachable', { skip: uidSkip }, async () => {
    await withFleet({ WORKER_ISOLATION: 'uid' }, {}, async (fleet) => {
      await fleet.addBot('hostile', { handler: HOSTILE, settings: { home: fleet.home } });
      await fleet.addBot('neighbour');
      await fleet.startMaster();
      const s = await fleet.waitRunning(['hostile', 'neighbour']);
      assert.deepEqual({ uid: s.master.isolation.uid, permission: s.master.isolation.permission }, { uid: true, permission: false });
      const r = await probe(fleet);
      for (const k of secrets) assert.match(r[k]!, /^(EACCES|EPERM)$/, `${k}: ${r[k]}`);
      assert.equal(r.signalMaster, 'EPERM');
      assert.equal(r.signalNeighbour, 'EPERM');
      assert.equal(r.controlSocket, 'EACCES');
      assert.equal(r.writeOwnDir, 'ok', 'its own data directory is writable');
      const groups = fs.readFileSync(`/proc/${s.workers.find((w) => w.botId === 'hostile')!.pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('Groups:'))!;
      assert.equal(groups.trim(), 'Groups:', 'no supplementary groups');
    });
  });

  test('the default on a root master: both layers, nothing reachable', { skip: uidSkip }, async () => {
    await withFleet({}, {}, async (fleet) => {
      await fleet.addBot('hostile', { handler: HOSTILE, settings: { home: fleet.home } });
      await fleet.addBot('neighbour');
      await fleet.startMaster();
      const s = await fleet.waitRunning(['hostile', 'neighbour']);
      assert.deepEqual({ uid: s.master.isolation.uid, permission: s.master.isolation.permission }, { uid: true, permission: true });
      const r = await probe(fleet);
      for (const k of [...secrets, 'signalMaster', 'signalNeighbour', 'controlSocket']) assert.notEqual(r[k], 'ok', `${k} must be blocked`);
      assert.equal(r.writeOwnDir, 'ok');
    });
  });

  test('a non-root master: the permission model alone blocks files and /proc, and says what it cannot block', { skip: uidSkip }, async (t) => {
    await withFleet({}, { asUid: NOBODY }, async (fleet) => {
      await fleet.addBot('hostile', { handler: HOSTILE, settings: { home: fleet.home } });
      await fleet.addBot('neighbour');
      await fleet.startMaster();
      const s = await fleet.waitRunning(['hostile', 'neighbour']);
      assert.equal(s.master.isolation.uid, false);
      assert.equal(s.master.isolation.permission, true);
      assert.match(s.master.isolation.notes.join('\n'), /cannot change user/);
      const r = await probe(fleet);
      for (const k of secrets) assert.equal(r[k], 'ERR_ACCESS_DENIED', `${k}: ${r[k]}`);
      assert.equal(r.writeOwnDir, 'ok');
      assert.equal(r.controlSocket, 'refused', 'the control socket answers nothing without the token');
      // Not blocked by the permission model (docs/security.md): signals and sockets. Reported, not asserted.
      t.diagnostic(`non-root probe: ${JSON.stringify(r)}`);
    });
  });

  test('without per-bot uids, allowChildProcess is refused (quarantined, config) unless ALLOW_UNISOLATED_CHILD_PROCESSES', { skip: uidSkip }, async () => {
    await withFleet({}, { asUid: NOBODY }, async (fleet) => {
      await fleet.addBot('spawner', { handler: HOSTILE, settings: { allowChildProcess: true } });
      await fleet.addBot('plain');
      await fleet.startMaster();
      await fleet.waitRunning(['plain']);
      const w = await fleet.waitWorker('spawner', (x) => x.state === 'quarantined', 15_000, 'the spawner quarantined');
      assert.equal(w.lastExit?.reason ?? 'config', 'config');
      assert.match(w.stateReason ?? '', /need per-bot uids/);
      assert.equal(w.restartsLastHour, 0, 'no restart budget spent: a restart cannot fix it');
    });
    await withFleet({ ALLOW_UNISOLATED_CHILD_PROCESSES: 'true' }, { asUid: NOBODY }, async (fleet) => {
      await fleet.addBot('spawner', { handler: HOSTILE, settings: { allowChildProcess: true } });
      await fleet.startMaster();
      await fleet.waitRunning(['spawner']);
    });
  });

  test('grandchildren, plain and setsid, are gone within 2 s of their worker\'s exit', { skip: uidSkip }, async () => {
    await withFleet({}, {}, async (fleet) => {
      await fleet.addBot('spawner', { handler: HOSTILE, settings: { allowChildProcess: true } });
      await fleet.startMaster();
      const s = await fleet.waitRunning(['spawner']);
      const before = s.workers[0]!;
      assert.equal(fs.readFileSync(`/proc/${before.pid}/oom_score_adj`, 'utf8').trim(), '500', 'the OOM killer takes a bot before its master');
      const kids = JSON.parse(await fleet.chat('spawner', 50, 'spawn')) as { plain: number; setsid: number };
      assert.ok(alive(kids.plain) && alive(kids.setsid), 'both grandchildren started');
      fleet.emulator.userSends(fleet.tg('spawner'), 51, 'crash');
      await waitFor(() => !alive(before.pid!), 10_000, 'the worker exiting');
      await waitFor(() => !alive(kids.plain) && !alive(kids.setsid), 2000, 'both grandchildren gone');
    });
  });
});

describe('no port of the master serves a bot', () => {
  const cases: Array<[string, { asUid?: number }, Record<string, string>]> = [
    ['a root master', {}, {}],
    ['a root master with STATUS_ACTIONS', {}, { STATUS_ACTIONS: '1' }],
    ['a non-root master (the permission model alone)', { asUid: NOBODY }, {}],
    ['a non-root master with STATUS_ACTIONS', { asUid: NOBODY }, { STATUS_ACTIONS: '1' }],
  ];
  for (const [name, opts, env] of cases) {
    test(`${name}: a handler gets nothing from any port of the master but /health; the operator still does`, { skip: uidSkip }, async () => {
      await withFleet(env, { ...opts, webhook: true }, async (fleet) => {
        await fleet.addBot('hostile', { handler: HOSTILE, mode: 'polling', settings: { home: fleet.home } });
        await fleet.addBot('neighbour', { mode: 'webhook' });
        await fleet.startMaster();
        const s = await fleet.waitRunning(['hostile', 'neighbour']);
        const before = s.workers.find((w) => w.botId === 'neighbour')!;
        const ports = JSON.parse(fs.readFileSync(path.join(fleet.home, 'run', 'ports.json'), 'utf8')) as { status: number; webhook: number };
        const r = JSON.parse(await fleet.chat('hostile', 60, `ports ${ports.status} ${ports.webhook} neighbour`)) as Record<string, string>;
        for (const k of ['status', 'metrics', 'page', 'events', 'webhookStats', 'restart']) assert.match(r[k]!, /^401 /, `${k}: ${r[k]}`);
        assert.match(r.rebound!, /^421 /, 'a foreign Host is refused before anything else');
        assert.equal(r.health, `200 ${'{"ok":true}'.length}`);
        assert.equal(r.healthBody, '{"ok":true}', '/health names nothing');
        assert.match(r.neighbourWebhook!, /^401 /, 'a neighbour\'s webhook needs its secret');
        const after = (await fleet.worker('neighbour'))!;
        assert.equal(after.pid, before.pid, 'the neighbour was not restarted');
        // The operator: the CLI (control socket) and the status server with the home's token.
        assert.equal((await fleet.statusHttp('/api/workers/status')).status, 200);
        assert.equal((await fleet.cli(['status'])).code, 0);
      });
    });
  }
});

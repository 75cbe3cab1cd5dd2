/**
 * What the kernel holds a bot to (master/host/cgroups.ts, bot-limits.ts): a bot growing
 * off-heap past its cap while it drains with an update that never settles is killed at
 * once (its cgroup; or, without one, at the first sample over: a non-root master), reason
 * `memory`; shared memory in /dev/shm is charged to it and deleted after it; a fork loop
 * stops at MAX_PROCESSES_PER_BOT while the master starts other bots meanwhile.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { FIXTURES, withFleet, type Fleet } from './helpers/fleet.js';
import { waitFor } from './helpers/wait.js';
import { blockingPath } from '../master/host/isolation.js';

const HOG = path.join(FIXTURES, 'hog.js');
const isRoot = process.getuid?.() === 0;
const NOBODY = 65534;
const skip = !isRoot ? 'needs root (CI runs as root)' : blockingPath(HOG) ? `the checkout is closed to other users at ${blockingPath(HOG)}` : false;
const ENV = { MAX_MEMORY_PER_WORKER_MB: '120', MEMORY_CHECK_INTERVAL_MS: '250', WORKER_TIMEOUT_MS: '30000' };

/**
 * Start `hog` growing off-heap at 40 MiB/s with an update that never settles, disable it (a
 * 30 s drain) and wait until it drains. @returns ms from the drain's start to the worker's exit, and its last row
 */
async function growWhileDraining(fleet: Fleet): Promise<{ ms: number; reason: string | undefined; state: string; peakMb: number }> {
  await fleet.addBot('hog', { handler: HOG });
  await fleet.addBot('calm');
  await fleet.startMaster();
  const s = await fleet.waitRunning(['hog', 'calm']);
  const pid = s.workers.find((w) => w.botId === 'hog')!.pid!;
  fleet.emulator.userSends(fleet.tg('hog'), 1, 'offheap 40');
  await fleet.waitWorker('hog', (w) => w.queueDepth >= 1, 10_000, 'the hog growing');
  assert.equal((await fleet.cli(['bots', 'disable', 'hog'])).code, 0);
  await fleet.waitWorker('hog', (w) => w.state === 'draining', 5_000, 'the hog draining before it reaches its cap');
  const t0 = Date.now();
  let peak = 0; // the bot's memory as the master saw it (its cgroup's charge, or RSS/PSS), highest before the kill
  const w = await fleet.waitWorker('hog', (x) => {
    if (x.pid === pid) peak = Math.max(peak, x.rssBytes);
    return x.pid !== pid;
  }, 25_000, 'the hog\'s worker gone');
  return { ms: Date.now() - t0, reason: w.lastExit?.reason, state: w.state, peakMb: Math.round(peak / 1048576) };
}

describe('the kernel holds each bot to its limits', { skip }, () => {
  test('a cgroup: off-heap growth while draining is killed at once, reason memory; the neighbour untouched', async (t) => {
    await withFleet(ENV, {}, async (fleet) => {
      const r = await growWhileDraining(fleet);
      const st = await fleet.status();
      t.diagnostic(`cgroups ${st.master.isolation.cgroups}: the hog (growing 40 MB/s to its 120 MB cap) ended ${r.ms} ms into its drain, reason ${r.reason}; peak seen ${r.peakMb} MB`);
      if (st.master.isolation.cgroups === null) return t.skip('no cgroup on this machine');
      assert.equal(r.reason, 'memory');
      assert.equal(r.state, 'stopped', 'it was being stopped: it stays stopped');
      assert.ok(r.ms < 5000, `killed ${r.ms} ms into a 30 s drain`);
      assert.equal(await fleet.chat('calm', 2, 'hi'), 'hi');
    });
  });

  test('no cgroup (a non-root master): sampled, draining included, killed at the first sample over', async (t) => {
    await withFleet(ENV, { asUid: NOBODY }, async (fleet) => {
      const r = await growWhileDraining(fleet);
      t.diagnostic(`sampling every 250 ms: the hog (growing 40 MB/s to its 120 MB cap) ended ${r.ms} ms into its drain, reason ${r.reason}; peak seen ${r.peakMb} MB`);
      assert.equal((await fleet.status()).master.isolation.cgroups, null);
      assert.equal(r.reason, 'memory');
      assert.equal(r.state, 'stopped');
      assert.ok(r.ms < 5000, `killed ${r.ms} ms into a 30 s drain`);
    });
  });

  test('shared memory in /dev/shm is charged to the bot and deleted after it', async (t) => {
    await withFleet({ MAX_MEMORY_PER_WORKER_MB: '120' }, {}, async (fleet) => {
      await fleet.addBot('shm', { handler: HOG, settings: { allowChildProcess: true } });
      await fleet.startMaster();
      const s = await fleet.waitRunning(['shm']);
      if (s.master.isolation.cgroups === null) return t.skip('no cgroup on this machine');
      const pid = s.workers[0]!.pid!;
      fleet.emulator.userSends(fleet.tg('shm'), 3, 'shm 600');
      // Either dd is killed (the reply says how far it got) or the worker is: 600 MiB never fits.
      const outcome = await Promise.race([
        fleet.emulator.waitForSent(fleet.tg('shm'), (m) => m.text.startsWith('shm '), 20_000, 'the shm reply').then((m) => m.text),
        fleet.waitWorker('shm', (w) => w.pid !== pid, 20_000, 'the worker killed').then((w) => `worker ended: ${w.lastExit?.reason}`),
      ]);
      t.diagnostic(`600 MiB into /dev/shm under a 120 MB cap: ${outcome}`);
      const written = /^shm (\d+)/.exec(outcome);
      if (written) assert.ok(Number(written[1]) < 130 * 1048576, 'the kernel stopped the write near the cap');
      else assert.match(outcome, /memory/);
      const stop = await fleet.cli(['bots', 'disable', 'shm']);
      assert.equal(stop.code, 0);
      await fleet.waitWorker('shm', (w) => w.state === 'stopped', 20_000, 'stopped');
      await waitFor(() => (fs.readdirSync('/dev/shm').some((f) => f === `hog-${pid}`) ? null : true), 5000, 'its /dev/shm file deleted');
    });
  });

  test('a bot writing 2 GB into its directory is stopped at its cap, reason disk, and stays down; a neighbour\'s webhooks keep answering 200', async (t) => {
    await withFleet({ MAX_DATA_PER_BOT_MB: '64', DATA_CHECK_INTERVAL_MS: '200' }, { webhook: true }, async (fleet) => {
      await fleet.addBot('filler', { handler: HOG, mode: 'polling' });
      await fleet.addBot('hooked', { mode: 'webhook' });
      await fleet.startMaster();
      const s = await fleet.waitRunning(['filler', 'hooked']);
      const pid = s.workers.find((w) => w.botId === 'filler')!.pid!;
      const t0 = Date.now();
      fleet.emulator.userSends(fleet.tg('filler'), 6, 'fill 2048');
      const codes: number[] = [];
      let id = 1;
      const w = await waitFor(async () => {
        codes.push(await fleet.postWebhook('hooked', JSON.stringify({ update_id: id++, message: { message_id: id, date: 0, chat: { id: 9, type: 'private' }, text: 'hi' } })));
        const x = await fleet.worker('filler');
        return x && x.pid !== pid && x.state === 'quarantined' ? x : null;
      }, 30_000, 'the filler stopped');
      const size = fs.statSync(path.join(fleet.home, 'bots', 'filler', 'fill.bin')).size;
      t.diagnostic(`stopped ${Date.now() - t0} ms after it began writing, at ${Math.round(size / 1048576)} MiB of 2048 (cap 64 MB); ${codes.length} webhook posts meanwhile`);
      assert.equal(w.lastExit?.reason, 'disk');
      assert.match(w.stateReason ?? '', /MAX_DATA_PER_BOT_MB/);
      assert.equal(w.quarantinedUntil, null, 'until an operator restarts it');
      assert.ok(size < 1024 * 1048576, 'stopped long before 2 GB');
      assert.deepEqual(codes.filter((c) => c !== 200), [], 'every webhook post answered 200');
    });
  });

  test('a fork loop stops at MAX_PROCESSES_PER_BOT; the master starts another bot meanwhile', async (t) => {
    await withFleet({ MAX_PROCESSES_PER_BOT: '64' }, {}, async (fleet) => {
      await fleet.addBot('forker', { handler: HOG, settings: { allowChildProcess: true } });
      await fleet.startMaster();
      await fleet.waitRunning(['forker']);
      const before = Date.now();
      fleet.emulator.userSends(fleet.tg('forker'), 4, 'forkloop');
      await fleet.addBot('late');
      await fleet.waitRunning(['late'], 20_000);
      const reply = await fleet.emulator.waitForSent(fleet.tg('forker'), (m) => m.text.startsWith('forked '), 30_000, 'the loop stopped');
      const n = Number(reply.text.split(' ')[1]);
      t.diagnostic(`${reply.text} (limit 64 tasks, the worker's own threads included), in ${Date.now() - before} ms`);
      assert.ok(n > 0 && n < 64, `stopped at the limit: ${n}`);
      assert.equal(await fleet.chat('late', 5, 'hi'), 'hi');
    });
  });
});

test('ProcStatReader: CPU time and RSS of a live process through a kept descriptor; null once it is gone', async () => {
  const { ProcStatReader } = await import('../master/host/proc.js');
  const { spawn } = await import('node:child_process');
  const r = new ProcStatReader();
  const self = r.use(process.pid)!;
  assert.ok(self.rssBytes > 10 * 1048576 && self.cpuMs > 0, `this process: ${JSON.stringify(self)}`);
  const t0 = performance.now();
  while (performance.now() - t0 < 60) Math.sqrt(Math.random()); // 60 ms of CPU, read through the same descriptor
  assert.ok(r.use(process.pid)!.cpuMs >= self.cpuMs + 30, 'the kept descriptor reads the current value');
  const child = spawn('sleep', ['30'], { stdio: 'ignore' });
  await new Promise((res) => child.once('spawn', res));
  assert.ok(r.use(child.pid!), 'a live child');
  child.kill('SIGKILL');
  await new Promise((res) => child.once('exit', res));
  assert.equal(r.use(child.pid!), null, 'gone and reaped: its descriptor reads an error, not a stranger');
  r.keepOnly(new Set());
});

test('ProcStatReader parses /proc/<pid>/stat bytes as proc(5) fields (a command with ") " and spaces in its name too); keptField reads a memory.stat line', async () => {
  const { ProcStatReader } = await import('../master/host/proc.js');
  const { KeptFile, keptField, statKey } = await import('../master/host/kept-file.js');
  const { spawn } = await import('node:child_process');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'botfleet-stat-'));
  const odd = path.join(dir, 'a) b (c');
  fs.symlinkSync('/bin/sleep', odd);
  const child = spawn(odd, ['30'], { stdio: 'ignore' });
  try {
    await new Promise((res) => child.once('spawn', res));
    // Read once sleep(1) sleeps: its fields hold still then.
    const text = await waitFor(async () => {
      const t = fs.readFileSync(`/proc/${child.pid}/stat`, 'latin1');
      return /\(a\) b \(c\) S /.test(t) ? t : null;
    }, 5_000, 'the command, as the kernel shows it, asleep');
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    const got = new ProcStatReader().use(child.pid!)!;
    assert.equal(got.rssBytes, Number(f[21]) * 4096, 'rss: field 24');
    assert.equal(got.cpuMs, (Number(f[11]) + Number(f[12])) * 10, 'utime + stime: fields 14 and 15');
    assert.ok(got.rssBytes > 0);
    const v1 = path.join(dir, 'v1.stat');
    const v2 = path.join(dir, 'v2.stat');
    const long = path.join(dir, 'long.stat');
    fs.writeFileSync(v1, 'cache 4096\nrss 100\nshmem 7\ntotal_cache 8192\ntotal_rss 123456\ntotal_shmem 4096\n');
    fs.writeFileSync(v2, 'anon 5000\nfile 1\nshmem 3\n');
    fs.writeFileSync(long, `${'x'.repeat(2000)}\nanon 1\nmissing 99\n`);
    const read = (p: string) => new KeptFile(p).readBytes();
    assert.equal(keptField(read(v1), statKey('total_rss')), 123456);
    assert.equal(keptField(read(v1), statKey('rss')), 100, 'a key that is the end of another key is not taken for it');
    assert.equal(keptField(read(v2), statKey('anon')), 5000, 'the first line');
    read(long);
    assert.equal(keptField(read(v2), statKey('missing')), 0, "absent: 0, not an earlier, longer read's stale bytes");
  } finally {
    child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('DirSizes: a directory is walked again only after inotify saw a change in it (a subdirectory too), or FORCED_WALK_MS later', async () => {
  const { DirSizes, FORCED_WALK_MS } = await import('../master/host/disk.js');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'botfleet-sizes-'));
  let now = 0;
  const sizes = new DirSizes(() => now);
  try {
    fs.mkdirSync(path.join(dir, 'sub'));
    fs.writeFileSync(path.join(dir, 'sub', 'a'), Buffer.alloc(64 * 1024, 1));
    const cap = 1 << 30;
    const first = (await sizes.measure('b', dir, cap))!;
    assert.ok(first >= 64 * 1024, `measured ${first}`);
    for (let i = 0; i < 5; i++) assert.equal(sizes.measure('b', dir, cap), first, 'nothing changed: the size at once, no promise');
    assert.equal(sizes.walks, 1, 'nothing changed: no walk');
    fs.appendFileSync(path.join(dir, 'sub', 'a'), Buffer.alloc(256 * 1024, 1));
    const grown = await waitFor(async () => ((await sizes.measure('b', dir, cap))! > first ? sizes.walks : null), 5_000, 'the write in the subdirectory seen');
    assert.equal(grown, 2, 'one walk for the change');
    assert.equal(await sizes.measure('b', dir, cap), await sizes.measure('b', dir, cap));
    assert.equal(sizes.walks, 2);
    const sets = sizes.watchSets;
    now += FORCED_WALK_MS;
    await sizes.measure('b', dir, cap);
    assert.equal(sizes.walks, 3, 'walked again once the size is FORCED_WALK_MS old');
    assert.equal(sizes.watchSets, sets, 'the forced walk found the same directories: the watches kept, not made anew');
    const kept = sizes.measure('b', dir, cap) as number;
    fs.writeFileSync(path.join(dir, 'sub', 'b'), Buffer.alloc(128 * 1024, 1));
    await waitFor(async () => ((await sizes.measure('b', dir, cap))! > kept ? true : null), 5_000, 'a write after the forced walk seen through the kept watches');
    assert.equal(sizes.walks, 4, 'one walk for that change');
    assert.ok((await sizes.measure('b', dir, 1024))! > 1024, 'a lower cap: walked, and over it');
    assert.equal(sizes.walks, 5);
  } finally {
    sizes.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

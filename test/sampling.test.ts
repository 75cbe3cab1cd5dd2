/**
 * The memory and CPU sampling (master/lifecycle/monitors.ts) on the fake clock, over this
 * process's real /proc/<pid>/stat: a bot's cgroup listing, and its processes' CPU and RSS,
 * are read once every sixth sample (the samples between read the group's memory alone), and
 * again at once when a process it listed is gone.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createFakeClock } from '../master/lifecycle/clock.js';
import { startMonitors } from '../master/lifecycle/monitors.js';
import type { Child } from '../master/lifecycle/child.js';

/** Above PID_MAX_LIMIT (2^22 on 64-bit Linux): never a live process. */
const NO_SUCH_PID = 2 ** 22 + 1;

function sampled(tree: number[], rounds: number): { listings: number; samples: number; reads: number; pids: number[] } {
  const clock = createFakeClock();
  const child = { botId: 'b', state: 'running', proc: { pid: process.pid }, uid: null, lastHeartbeatAt: null } as unknown as Child;
  let listings = 0;
  let samples = 0;
  let reads = 0;
  let pids: number[] = [];
  const stop = startMonitors({
    children: () => [child], now: () => clock.now(), clock, heartbeatTimeoutMs: 3_600_000, memoryCheckIntervalMs: 1000,
    onHung: () => assert.fail('not hung'), onPause: () => undefined,
    treeOf: () => (listings++, tree),
    onSample: (_c, rss, cpu, p) => {
      assert.equal(rss === null, cpu === null, 'RSS and CPU are read together');
      if (rss !== null) {
        assert.ok(rss > 0, "this process's RSS was read");
        reads++;
      }
      samples++;
      pids = p;
    },
  });
  for (let i = 0; i < rounds; i++) clock.advance(1000);
  stop();
  return { listings, samples, reads, pids };
}

test('a bot\'s cgroup is listed, and its processes read, once every sixth sample; the samples between read its memory alone', () => {
  const r = sampled([process.pid], 12);
  assert.equal(r.samples, 12);
  assert.equal(r.listings, 2, '12 samples, 2 listings');
  assert.equal(r.reads, 2, "the processes' /proc stat read at the listings only");
  assert.deepEqual(r.pids, [process.pid]);
});

test('a listed process that is gone makes the next sample list again', () => {
  const r = sampled([process.pid, NO_SUCH_PID], 5);
  assert.equal(r.samples, 5);
  assert.equal(r.listings, 5, 'every sample lists while a listed pid reads as gone');
  assert.equal(r.reads, 5);
});

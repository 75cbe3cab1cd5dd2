/** Pure policies on a fake clock: restart intensity and backoff, dedup window, per-chat queue, limiter. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { heartbeatCheckEveryMs, heartbeatOverdue, startupOverdue } from '../master/lifecycle/policy/deadlines.js';
import { createLimiter } from '../master/lifecycle/policy/limiter.js';
import { judgedMemory, overMemoryCap } from '../master/lifecycle/policy/memory.js';
import { decideRestart, emptyHistory, type RestartHistory, type RestartPolicy } from '../master/lifecycle/policy/restart.js';
import { ALLOWED_TRANSITIONS } from '../master/lifecycle/child.js';
import { createChatQueue } from '../worker/chat-queue.js';
import { createLeaseGate } from '../worker/lease.js';
import { createDedupWindow } from '../worker/dedup.js';
import { heartbeatPeriodMs, startHeartbeat } from '../worker/heartbeat.js';

const P: RestartPolicy = { maxRestarts: 5, periodMs: 3_600_000, baseMs: 1000, capMs: 45_000, healthyRunMs: 300_000 };

test('backoff doubles on quick failures up to the cap, then the quota quarantines until the window frees', () => {
  let h: RestartHistory = emptyHistory();
  const delays: number[] = [];
  let t = 0;
  for (let i = 0; i < 5; i++) {
    const { next, act } = decideRestart(h, P, t, 500, false);
    assert.equal(act.action, 'restart');
    if (act.action === 'restart') delays.push(act.delayMs);
    h = next;
    t += 60_000;
  }
  assert.deepEqual(delays, [0, 1000, 2000, 4000, 8000]);
  const { act } = decideRestart(h, P, t, 500, false);
  assert.deepEqual(act, { action: 'quarantine', until: 3_600_000, why: '5 restarts within 3600 s' });
  // once the first restart leaves the window, a restart is allowed again
  assert.equal(decideRestart(h, P, 3_600_000, 500, false).act.action, 'restart');
});

test('the cap bounds the delay', () => {
  const h: RestartHistory = { restarts: [], consecutive: 10 };
  const { act } = decideRestart(h, { ...P, maxRestarts: 100 }, 0, 1, false);
  assert.deepEqual(act, { action: 'restart', delayMs: 45_000 });
});

test('the first restart after a long healthy run is immediate; the budget is kept', () => {
  const h: RestartHistory = { restarts: [10, 20], consecutive: 4 };
  const { next, act } = decideRestart(h, P, 1_000_000, 400_000, false);
  assert.deepEqual(act, { action: 'restart', delayMs: 0 });
  assert.deepEqual(next, { restarts: [10, 20, 1_000_000], consecutive: 1 });
});

test('exit 78 quarantines with no retry time', () => {
  assert.deepEqual(decideRestart(emptyHistory(), P, 0, 10, true).act, { action: 'quarantine', until: null, why: 'exit code 78: do not restart' });
});

test('every state has its allowed transitions listed, and only known states', () => {
  const states = Object.keys(ALLOWED_TRANSITIONS);
  assert.deepEqual(states.sort(), ['backoff', 'draining', 'pending', 'quarantined', 'running', 'starting', 'stopped']);
  for (const to of Object.values(ALLOWED_TRANSITIONS).flat()) assert.ok(states.includes(to));
  assert.ok(!ALLOWED_TRANSITIONS.stopped.includes('running'), 'a stopped child must start before it runs');
  assert.ok(!ALLOWED_TRANSITIONS.pending.includes('running'));
});

test('dedup window: a repeat inside the window is a duplicate, after it is not; size is bounded', () => {
  const d = createDedupWindow(30_000, 3);
  assert.equal(d.seen(1, 0), false);
  assert.equal(d.seen(1, 29_999), true);
  assert.equal(d.seen(1, 30_000), false);
  d.seen(2, 30_001);
  d.seen(3, 30_002);
  d.seen(4, 30_003);
  assert.equal(d.size(), 3);
  assert.equal(d.seen(1, 30_004), false, 'the oldest entry was dropped at the bound');

  // A larger bound drops its oldest tenth at once; the newest ids stay remembered.
  const big = createDedupWindow(30_000, 100);
  for (let id = 1; id <= 101; id++) big.seen(id, 0);
  assert.equal(big.size(), 91);
  assert.equal(big.seen(101, 1), true, 'the newest is still a duplicate');
  assert.equal(big.seen(11, 1), true, 'the oldest kept one is still a duplicate');
  assert.equal(big.seen(10, 1), false, 'the oldest tenth was forgotten');
});

test('chat queue: one chat in order, chats concurrently, back-pressure at the bound', async () => {
  const log: string[] = [];
  const gates = new Map<string, () => void>();
  const q = createChatQueue<string>(async (item) => {
    log.push(`start ${item}`);
    await new Promise<void>((r) => gates.set(item, r));
    log.push(`end ${item}`);
  }, 3);
  q.push('a', 'a1');
  q.push('a', 'a2');
  q.push('b', 'b1');
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(log, ['start a1', 'start b1'], 'a2 waits for a1; b1 runs beside a1');
  let room = false;
  void q.waitForRoom().then(() => (room = true));
  await new Promise((r) => setImmediate(r));
  assert.equal(room, false, 'three in flight: no room');
  gates.get('a1')!();
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(log, ['start a1', 'start b1', 'end a1', 'start a2']);
  assert.equal(room, true);
  gates.get('a2')!();
  gates.get('b1')!();
  await q.idle();
  assert.equal(q.depth(), 0);
});

test('chat queue: a failing item does not stop the next of its chat', async () => {
  const done: string[] = [];
  const q = createChatQueue<string>(async (i) => {
    if (i === 'bad') throw new Error('x');
    done.push(i);
  }, 10);
  q.push('c', 'bad');
  q.push('c', 'good');
  await q.idle();
  assert.deepEqual(done, ['good']);
});

test('chat queue: abandon lets the running items finish and drops the queued ones (the master is gone)', async () => {
  const started: string[] = [];
  const gates = new Map<string, () => void>();
  const q = createChatQueue<string>((i) => new Promise<void>((r) => {
    started.push(i);
    gates.set(i, r);
  }), 10);
  q.push('a', 'a1');
  q.push('a', 'a2');
  q.push('b', 'b1');
  q.push('b', 'b2');
  await new Promise((r) => setImmediate(r));
  q.abandon();
  gates.get('a1')!();
  gates.get('b1')!();
  await q.idle();
  assert.deepEqual(started, ['a1', 'b1'], 'a2 and b2 never ran');
  assert.equal(q.depth(), 0);
});

test('limiter: at most n holders, FIFO', async () => {
  const l = createLimiter(2);
  const r1 = await l.acquire();
  const r2 = await l.acquire();
  let third = false;
  const p3 = l.acquire().then((r) => ((third = true), r));
  await new Promise((r) => setImmediate(r));
  assert.equal(third, false);
  assert.equal(l.waiting(), 1);
  r1();
  r1(); // idempotent
  const r3 = await p3;
  assert.equal(l.active(), 2);
  r2();
  r3();
  assert.equal(l.active(), 0);
});

test('deadlines: heartbeat and startup, as a table on a fake clock', () => {
  const rows: Array<[number | null, number, number, boolean]> = [
    [null, 10_000, 60_000, false], // no heartbeat yet: the startup deadline applies instead
    [0, 60_000, 60_000, false], // exactly at the deadline: not yet
    [0, 60_001, 60_000, true],
    [5_000, 60_001, 60_000, false],
  ];
  for (const [last, now, timeout, want] of rows) assert.equal(heartbeatOverdue(last, now, timeout), want, `heartbeat ${last} at ${now}`);
  assert.equal(startupOverdue(0, 30_001, 30_000), true);
  assert.equal(startupOverdue(0, 30_000, 30_000), false);
  assert.equal(startupOverdue(null, 99_999, 30_000), false);
  assert.deepEqual([100, 3000, 60_000].map(heartbeatCheckEveryMs), [25, 750, 1000]);
});

test('memory cap: the cgroup\'s charge when there is one; else RSS, and PSS only when RSS is over; one sample over kills', () => {
  let pssAsked = 0;
  const pss = (v: number | null) => () => (pssAsked++, v);
  assert.equal(judgedMemory({ charged: 120, rss: 10, pss: pss(5) }, 100), 120, 'the kernel\'s count wins');
  assert.equal(judgedMemory({ charged: null, rss: 90, pss: pss(5) }, 100), 90);
  assert.equal(pssAsked, 0, 'PSS is not read while RSS is under the cap');
  assert.equal(judgedMemory({ charged: null, rss: 449, pss: pss(40) }, 100), 40, 'shared pages counted once: 300 sleeps are not 449 MB');
  assert.equal(judgedMemory({ charged: null, rss: 449, pss: pss(null) }, 100), 449, 'PSS unreadable: RSS');
  assert.deepEqual([99, 100, 101].map((b) => overMemoryCap(b, 100)), [false, false, true]);
});

test('text from a bot is escaped for the terminal: control characters become \\xNN', async () => {
  const { escapeControl } = await import('../common/table.js');
  assert.equal(escapeControl('ok\u001b[2J\u0007name\r\n\u009b'), 'ok\\x1b[2J\\x07name\\x0d\\x0a\\x9b');
  assert.equal(escapeControl('plain ünïcode ✓'), 'plain ünïcode ✓');
});

test('the line splitter is linear and bounded: long lines are cut once, the rest skipped to the newline', async () => {
  const { createLineSplitter } = await import('../common/line-splitter.js');
  const lines: Array<[string, boolean]> = [];
  const s = createLineSplitter({ maxLineBytes: 8, onLine: (l, t) => lines.push([l.toString(), t]) });
  s.push(Buffer.from('ab\ncdefghijklmn'));
  assert.ok(s.pendingBytes() <= 8);
  s.push(Buffer.from('opq\nrs'));
  s.push(Buffer.from('t\n\n'));
  s.push(Buffer.from('tail'));
  s.end();
  assert.deepEqual(lines, [['ab', false], ['cdefghij', true], ['rst', false], ['tail', false]]);
  // A megabyte in one-byte chunks without a newline holds at most the cap.
  const big = createLineSplitter({ maxLineBytes: 1024, onLine: () => undefined });
  for (let i = 0; i < 100_000; i++) big.push(Buffer.from('x'));
  assert.ok(big.pendingBytes() === 0 || big.pendingBytes() <= 1024);
});

test('the per-second budget refuses past its limit and renews each window', async () => {
  const { createBudget } = await import('../common/budget.js');
  const b = createBudget(10);
  assert.equal(b.take(6, 0), true);
  assert.equal(b.take(5, 500), false, 'over the window limit');
  assert.equal(b.take(4, 999), true);
  assert.equal(b.take(10, 1000), true, 'a new window');
});

test('updateProblem: null kinds, wrong types and deep nesting are named; real updates pass', async () => {
  const { updateProblem, MAX_UPDATE_DEPTH } = await import('../worker/protocol.js');
  assert.equal(updateProblem({ update_id: 1, message: { message_id: 1, chat: { id: 1 }, entities: [{ type: 'bold' }] } }), null);
  assert.match(updateProblem({ update_id: 1, message: null })!, /"message" is not an object/);
  assert.match(updateProblem({ update_id: 1, callback_query: 'x' })!, /not an object/);
  assert.match(updateProblem({ update_id: -1 })!, /update_id/);
  assert.match(updateProblem([1])!, /not a JSON object/);
  let deep: Record<string, unknown> = {};
  const root = { update_id: 2, message: deep };
  for (let i = 0; i < MAX_UPDATE_DEPTH + 5; i++) deep = (deep.a = {}) as Record<string, unknown>;
  assert.match(updateProblem(root)!, /nested deeper/);
});

test('masterWasPaused: a heartbeat check far later than its period means the master was not running', async () => {
  const { masterWasPaused } = await import('../master/lifecycle/policy/deadlines.js');
  assert.equal(masterWasPaused(260, 250, 1000), false, 'on time');
  assert.equal(masterWasPaused(600, 250, 1000), true);
  assert.equal(masterWasPaused(600, 250, 60_000), false, 'not a quarter of the timeout');
  assert.equal(masterWasPaused(120_000, 1000, 60_000), true);
});

test('lease gate: no deadline polls freely; a long poll ends 250 ms before the deadline; past it no call, until renewed', async () => {
  let now = 1_000_000;
  const open = createLeaseGate(null, () => now);
  assert.equal(open.pollSeconds(25), 25);
  assert.equal(open.live(), true);
  const g = createLeaseGate(now + 10_000, () => now);
  assert.equal(g.pollSeconds(25), 9, 'at most (10 000 - 250) ms, whole seconds');
  now += 8_900;
  assert.equal(g.pollSeconds(25), 0, 'under a second left: no long poll');
  assert.equal(g.live(), true, 'a short call is still allowed');
  now += 900;
  assert.equal(g.live(), false, 'within the margin: no call at all');
  const stop = new AbortController();
  let woken = false;
  const waiting = g.renewed(stop.signal).then(() => (woken = true));
  await new Promise((r) => setImmediate(r));
  assert.equal(woken, false);
  g.set(now + 5_000);
  await waiting;
  assert.equal(g.pollSeconds(25), 4);
});

test('lease gate after a 409: held (no call at all) through ordinary renewals, released only by a renewal the master confirmed after its re-check', async () => {
  const now = 1_000_000;
  const g = createLeaseGate(now + 10_000, () => now);
  g.hold();
  assert.equal(g.live(), false);
  assert.equal(g.pollSeconds(25), 0);
  const stop = new AbortController();
  let woken = false;
  const waiting = g.renewed(stop.signal).then(() => (woken = true));
  g.set(now + 10_000); // the periodic renewal, sent before the master's look
  await new Promise((r) => setImmediate(r));
  assert.equal(woken, false, 'an ordinary renewal does not release the hold');
  assert.equal(g.live(), false);
  g.set(now + 10_000, true);
  await waiting;
  assert.equal(g.live(), true, 'the confirmed one does');
  assert.equal(g.pollSeconds(25), 9);
});

test('spread rounds: every item once per interval, a share per tick, a new round sees new items, a slow slice is never overlapped', async () => {
  const { spreadRounds, slicesOf } = await import('../master/lifecycle/spread.js');
  const { createFakeClock } = await import('../master/lifecycle/clock.js');
  assert.equal(slicesOf(5000), 20, 'ticks of at least 250 ms');
  assert.equal(slicesOf(60_000), 50, 'at most 50 a round');
  assert.equal(slicesOf(200), 1);
  const clock = createFakeClock();
  const items = Array.from({ length: 100 }, (_, i) => i);
  const seen: number[] = [];
  const stop = spreadRounds({ clock, intervalMs: 5000, list: () => [...items], each: (i) => void seen.push(i) });
  clock.advance(250);
  await Promise.resolve();
  assert.equal(seen.length, 5, '100 items over 20 ticks: 5 a tick, not 100 at once');
  for (let t = 0; t < 19; t++) {
    clock.advance(250);
    await Promise.resolve();
  }
  assert.deepEqual(seen, items, 'each item once in the round, in order');
  items.push(100);
  clock.advance(5000);
  for (let k = 0; k < 5; k++) await Promise.resolve();
  assert.equal(seen.length, 201, 'the next round took the new item');
  stop();
  // A slow async item: the ticks meanwhile are skipped, the slice is not run twice at once.
  const slow = createFakeClock();
  let running = 0;
  let most = 0;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const stopSlow = spreadRounds({
    clock: slow, intervalMs: 1000, list: () => [1, 2, 3, 4],
    async each() {
      running++;
      most = Math.max(most, running);
      await gate;
      running--;
    },
  });
  slow.advance(250);
  slow.advance(250);
  slow.advance(250);
  assert.equal(most, 1);
  release();
  stopSlow();
});

test('heartbeat: a polling worker beats on its poll returns and its timer only covers a poll that does not come back', () => {
  // The defaults: 15 s interval, 60 s hung deadline, a 30 s long poll (40 s with its client margin).
  assert.equal(heartbeatPeriodMs({ intervalMs: 15_000, timeoutMs: 60_000, pollWindowMs: 40_000 }), 40_000);
  assert.equal(heartbeatPeriodMs({ intervalMs: 15_000, timeoutMs: 60_000, pollWindowMs: null }), 15_000, 'webhook: the interval');
  assert.equal(heartbeatPeriodMs({ intervalMs: 15_000, timeoutMs: 50_000, pollWindowMs: 40_000 }), 15_000, 'no quarter of the deadline left: the interval');
  assert.equal(heartbeatPeriodMs({ intervalMs: 500, timeoutMs: 2_000, pollWindowMs: 40_000 }), 500, "the tests' short deadlines: the interval");
  assert.equal(heartbeatPeriodMs({ intervalMs: 15_000, pollWindowMs: 40_000 }), 15_000, 'a master that does not say its deadline: the interval');

  // A fake clock: its timers fired by hand when their time comes.
  let now = 0;
  const timers = new Set<{ due: number; fn: () => void }>();
  const beats: number[] = [];
  const hb = startHeartbeat({
    beat: () => beats.push(now), intervalMs: 15_000, periodMs: 40_000, now: () => now,
    setTimer: (fn, ms) => {
      const t = { due: now + ms, fn };
      timers.add(t);
      return t;
    },
    clearTimer: (t) => void timers.delete(t),
  });
  const advance = (to: number) => {
    for (;;) {
      const next = [...timers].sort((a, b) => a.due - b.due)[0];
      if (!next || next.due > to) break;
      timers.delete(next);
      now = next.due;
      next.fn();
    }
    now = to;
  };
  assert.deepEqual(beats, [0], 'a beat at once');
  // Idle: the long poll returns every 30 s; each return beats and the timer never fires.
  for (let t = 30_000; t <= 300_000; t += 30_000) {
    advance(t);
    hb.pollReturned();
  }
  assert.deepEqual(beats, [0, 30_000, 60_000, 90_000, 120_000, 150_000, 180_000, 210_000, 240_000, 270_000, 300_000]);
  assert.equal(timers.size, 1, 'one timer armed at a time');
  // Busy: polls return at once; a beat only once 15 s passed since the last.
  beats.length = 0;
  for (let t = 300_500; t <= 330_000; t += 500) {
    advance(t);
    hb.pollReturned();
  }
  assert.deepEqual(beats, [315_000, 330_000]);
  // No poll returns (a handler holds the queue, or the lease holds polling): the timer beats every 40 s.
  beats.length = 0;
  advance(420_000);
  assert.deepEqual(beats, [370_000, 410_000]);
  // An ack 5 s after a beat, then a long idle poll: the counters go out 15 s after that beat, not at the poll's return.
  beats.length = 0;
  advance(415_000);
  hb.activity();
  hb.activity();
  advance(440_000);
  assert.deepEqual(beats, [425_000]);
  advance(455_000);
  hb.pollReturned();
  assert.deepEqual(beats, [425_000, 455_000]);
});

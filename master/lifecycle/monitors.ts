/**
 * The supervisor's periodic checks, each on one shared timer for every child
 * (OTP's one-timer-for-many): the heartbeat deadline and the memory sample. They
 * only read children and report through callbacks; the supervisor alone acts.
 */
import type { Child } from './child.js';
import { heartbeatCheckEveryMs, heartbeatOverdue, masterWasPaused } from './policy/deadlines.js';
import { realClock, type Clock } from './clock.js';
import { listProcesses, ProcStatReader } from '../host/proc.js';
import { spreadRounds } from './spread.js';

/** Every process now by owner uid and by process group (one /proc listing). */
interface ProcessIndex { byUid: Map<number, number[]>; byPgrp: Map<number, number[]> }

function indexProcesses(): ProcessIndex {
  const byUid = new Map<number, number[]>();
  const byPgrp = new Map<number, number[]>();
  const add = (m: Map<number, number[]>, k: number, pid: number) => {
    const list = m.get(k);
    if (list) list.push(pid);
    else m.set(k, [pid]);
  };
  for (const p of listProcesses()) {
    add(byUid, p.uid, p.pid);
    add(byPgrp, p.pgrp, p.pid);
  }
  return { byUid, byPgrp };
}

/** A live child's process tree from a listing: the pids of its uid when it has its own, else of its process group; the worker's pid always. */
function treeFrom(index: ProcessIndex, c: Child & { proc: NonNullable<Child['proc']> }): number[] {
  const pids = new Set((c.uid !== null ? index.byUid.get(c.uid) : index.byPgrp.get(c.proc.pid)) ?? []);
  pids.add(c.proc.pid);
  return [...pids];
}

/** What the monitors need; times in ms. */
export interface MonitorDeps {
  children: () => Iterable<Child>;
  now: () => number;
  /** Timers of the checks (default: Node's). */
  clock?: Clock;
  heartbeatTimeoutMs: number;
  memoryCheckIntervalMs: number;
  /** A running child missed its heartbeat deadline. */
  onHung(c: Child): void;
  /**
   * The heartbeat check ran `gapMs` late: the master itself was not running (paused,
   * suspended, starved). Called before any deadline is judged, so the supervisor can
   * give every child a fresh deadline instead of killing them as hung.
   */
  onPause(gapMs: number): void;
  /** Every DATA_CHECK_INTERVAL_MS: the size of a live child's own directory, bytes (null: unreadable), stopped early past its cap; at once when known, else a walk's promise. */
  dataCheckIntervalMs?: number;
  measureData?(c: Child): number | null | Promise<number | null>;
  onData?(c: Child, bytes: number): void;
  /** A child's processes as its cgroup lists them (its whole tree), or null without one: a /proc listing is used then. */
  treeOf?(c: Child): number[] | null;
  /**
   * A fresh sample of a live child (draining ones included): its processes' RSS summed (bytes),
   * CPU (percent of one core since its previous read), and their pids. RSS and CPU are null in
   * the samples between two listings of its cgroup: its memory is then the group's alone.
   */
  onSample(c: Child, rssBytes: number | null, cpuPercent: number | null, pids: number[]): void;
}

/** Start both monitors. @returns a function that stops them. */
export function startMonitors(d: MonitorDeps): () => void {
  const clock = d.clock ?? realClock;
  const every = heartbeatCheckEveryMs(d.heartbeatTimeoutMs);
  let lastCheck = d.now();
  const heartbeat = clock.setInterval(() => {
    const t = d.now();
    const gap = t - lastCheck;
    lastCheck = t;
    if (masterWasPaused(gap, every, d.heartbeatTimeoutMs)) return d.onPause(gap);
    for (const c of d.children()) {
      if (c.state === 'running' && c.proc && heartbeatOverdue(c.lastHeartbeatAt, t, d.heartbeatTimeoutMs)) d.onHung(c);
    }
  }, every);

  const stopMemory = startSampling(d, clock);
  heartbeat.unref?.();
  const stopData = startDataChecks(d, clock);
  return () => {
    stopData();
    clock.clearInterval(heartbeat);
    stopMemory();
  };
}

/**
 * Every live child's memory and CPU, spread over MEMORY_CHECK_INTERVAL_MS (spread.ts):
 * its tree from its cgroup (listed every TREE_LIST_EVERY samples; else one /proc listing a
 * round), each process's /proc/<pid>/stat through a kept descriptor (host/proc.ts), CPU as
 * the tree's CPU time since the bot's previous read. With a cgroup, the samples between two
 * listings read the group's memory alone: the kernel holds the cap (memory.max), the sample
 * only shows it. At 1000 bots: ~20 µs a bot, 50 bots every 250 ms.
 * @returns stop
 */
function startSampling(d: MonitorDeps, clock: Clock): () => void {
  const stat = new ProcStatReader();
  const before = new WeakMap<Child, { pid: number; cpuMs: number; at: number }>();
  const trees = new WeakMap<Child, { pid: number; pids: number[]; left: number }>();
  let index: ProcessIndex | null = null;
  let seen = new Set<number>();
  /** The child's tree: its cgroup's listing (kept for the TREE_LIST_EVERY samples that follow); else one /proc listing a round. */
  const treeOf = (c: Child & { proc: NonNullable<Child['proc']> }): number[] => {
    const { pid } = c.proc;
    const group = d.treeOf?.(c);
    if (!group || group.length === 0) {
      trees.delete(c);
      return treeFrom((index ??= indexProcesses()), c);
    }
    const pids = group.includes(pid) ? group : [...group, pid];
    trees.set(c, { pid, pids, left: TREE_LIST_EVERY - 1 });
    return pids;
  };
  const sample = (c: Child) => {
    if (!isLive(c)) return;
    const live = c as Child & { proc: NonNullable<Child['proc']> };
    const kept = trees.get(c);
    if (kept && kept.pid === live.proc.pid && kept.left > 0) {
      // Between listings: the group's memory only (its memory.stat), the processes' descriptors kept.
      kept.left--;
      for (const pid of kept.pids) seen.add(pid);
      return d.onSample(c, null, null, kept.pids);
    }
    const pids = treeOf(live);
    let rss = 0;
    let cpuMs = 0;
    for (const pid of pids) {
      const u = stat.use(pid);
      if (!u) {
        trees.delete(c); // a process of the kept listing is gone: list again at the next sample
        continue;
      }
      seen.add(pid);
      rss += u.rssBytes;
      cpuMs += u.cpuMs;
    }
    if (!seen.has(live.proc.pid)) return; // gone: its exit is on the way
    const at = d.now();
    const prev = before.get(c);
    before.set(c, { pid: live.proc.pid, cpuMs, at });
    const cpu = prev && prev.pid === live.proc.pid && at > prev.at ? Math.max(0, ((cpuMs - prev.cpuMs) / (at - prev.at)) * 100) : 0;
    d.onSample(c, rss, cpu, pids);
  };
  return spreadRounds({
    clock, intervalMs: d.memoryCheckIntervalMs, list: () => liveChildren(d), each: sample,
    startRound() {
      index = null;
      stat.keepOnly(seen); // descriptors of processes still sampled last round
      seen = new Set();
    },
  });
}

/**
 * A bot's tree is listed from its cgroup (cgroup.procs), and its processes' CPU read, once
 * every this many of its samples (~30 s at the default MEMORY_CHECK_INTERVAL_MS), and at
 * once after one of its processes is gone. The listing was the dearest read of an idle
 * master's sampling (cpu-prof at 300 idle bots: 11 % of the master's CPU, v1 builds a pid
 * list per read), the /proc/<pid>/stat reads a third of the rest (perf at 600 idle bots:
 * sampling 26 % of the master's CPU, a third of it in pread). The memory cap needs neither
 * (the group's memory.stat covers every process of the bot): the CPU shown is over ~30 s.
 */
const TREE_LIST_EVERY = 6;

/** A child with a worker process that is running, starting or draining: a drain is no time to grow past a cap. */
const isLive = (c: Child): boolean => c.proc !== null && (c.state === 'running' || c.state === 'starting' || c.state === 'draining');

/** Every live child. */
const liveChildren = (d: MonitorDeps): Child[] => [...d.children()].filter(isLive);

/** The data-directory checks: each live bot's directory measured once every DATA_CHECK_INTERVAL_MS, spread over it, one walk at a time. @returns stop */
function startDataChecks(d: MonitorDeps, clock: Clock): () => void {
  const measure = d.measureData;
  const report = d.onData;
  if (!measure || !report || !d.dataCheckIntervalMs) return () => undefined;
  return spreadRounds({
    clock, intervalMs: d.dataCheckIntervalMs, list: () => liveChildren(d),
    each(c) {
      if (!isLive(c)) return;
      const bytes = measure(c);
      // Most checks are answered at once (nothing changed): no promise for them (500 a second at 1000 idle bots).
      if (!(bytes instanceof Promise)) return void (bytes !== null && report(c, bytes));
      return bytes.then((b) => void (b !== null && c.proc && report(c, b)), () => undefined);
    },
  });
}

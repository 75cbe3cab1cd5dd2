/**
 * The supervisor's periodic checks, each on one shared timer for every child
 * (OTP's one-timer-for-many): the heartbeat deadline and the memory sample. They
 * only read children and report through callbacks; the supervisor alone acts.
 */
import type { Child } from './child.js';
import { heartbeatCheckEveryMs, heartbeatOverdue, masterWasPaused } from './policy/deadlines.js';
import { sampleProcesses } from './resource-sampler.js';
import { realClock, type Clock } from './clock.js';
import { listProcesses } from '../host/proc.js';

/** Each live child's process tree: pids of its uid when it has its own, else of its process group; the worker's pid always. */
export function processTrees(list: Child[]): Map<Child, number[]> {
  const out = new Map<Child, number[]>();
  if (list.length === 0) return out;
  const byUid = new Map<number, number[]>();
  const byPgrp = new Map<number, number[]>();
  for (const p of listProcesses()) {
    let u = byUid.get(p.uid);
    if (!u) byUid.set(p.uid, (u = []));
    u.push(p.pid);
    let g = byPgrp.get(p.pgrp);
    if (!g) byPgrp.set(p.pgrp, (g = []));
    g.push(p.pid);
  }
  for (const c of list) {
    if (!c.proc) continue;
    const pids = new Set((c.uid !== null ? byUid.get(c.uid) : byPgrp.get(c.proc.pid)) ?? []);
    pids.add(c.proc.pid);
    out.set(c, [...pids]);
  }
  return out;
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
  /** Every DATA_CHECK_INTERVAL_MS: the size of a live child's own directory, bytes (null: unreadable), stopped early past its cap. */
  dataCheckIntervalMs?: number;
  measureData?(c: Child): Promise<number | null>;
  onData?(c: Child, bytes: number): void;
  /** A fresh sample of a live child (draining ones included): its processes' RSS summed (bytes), CPU (percent of one core), and their pids. */
  onSample(c: Child, rssBytes: number, cpuPercent: number, pids: number[]): void;
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

  // One batched pidusage round per interval; a slow round is never overlapped by the next.
  let sampling = false;
  // A bot's memory and CPU are its whole process tree's: every process of its uid (per-bot
  // uids), else of its worker's process group, so a grandchild cannot hide 450 MB from the cap.
  const sampleTrees = async (list: Child[]) => {
    const trees = processTrees(list);
    const samples = await sampleProcesses([...trees.values()].flat());
    for (const c of list) {
      const pids = c.proc ? trees.get(c) : undefined;
      if (!pids || !samples.has(c.proc!.pid)) continue;
      let rss = 0;
      let cpu = 0;
      for (const pid of pids) {
        const x = samples.get(pid);
        if (x) {
          rss += x.rssBytes;
          cpu += x.cpuPercent;
        }
      }
      d.onSample(c, rss, cpu, pids);
    }
  };
  const memory = clock.setInterval(() => {
    if (sampling) return;
    sampling = true;
    const live = liveChildren(d);
    void sampleTrees(live).finally(() => (sampling = false));
  }, d.memoryCheckIntervalMs);
  heartbeat.unref?.();
  memory.unref?.();
  const stopData = startDataChecks(d, clock);
  return () => {
    stopData();
    clock.clearInterval(heartbeat);
    clock.clearInterval(memory);
  };
}

/** Children with a worker process, draining ones included: a drain is no time to grow past a cap. */
const liveChildren = (d: MonitorDeps): Child[] => [...d.children()].filter((c) => c.proc && (c.state === 'running' || c.state === 'starting' || c.state === 'draining'));

/** The data-directory checks: one walk at a time over the live children, a round every DATA_CHECK_INTERVAL_MS. @returns stop */
function startDataChecks(d: MonitorDeps, clock: Clock): () => void {
  const measure = d.measureData;
  const report = d.onData;
  if (!measure || !report || !d.dataCheckIntervalMs) return () => undefined;
  let running = false;
  const timer = clock.setInterval(() => {
    if (running) return;
    running = true;
    const live = liveChildren(d);
    void (async () => {
      for (const c of live) {
        const bytes = await measure(c).catch(() => null);
        if (bytes !== null && c.proc) report(c, bytes);
      }
    })().finally(() => (running = false));
  }, d.dataCheckIntervalMs);
  timer.unref?.();
  return () => clock.clearInterval(timer);
}

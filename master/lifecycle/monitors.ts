/**
 * The supervisor's periodic checks, each on one shared timer for every child
 * (OTP's one-timer-for-many): the heartbeat deadline and the memory sample. They
 * only read children and report through callbacks; the supervisor alone acts.
 */
import type { Child } from './child.js';
import { heartbeatCheckEveryMs, heartbeatOverdue, masterWasPaused } from './policy/deadlines.js';
import { confirmDelayMs } from './policy/memory.js';
import { sampleProcesses } from './resource-sampler.js';
import { realClock, type Clock, type Timer } from './clock.js';
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
  /**
   * A fresh RSS/CPU sample of a live child (bytes, percent of one core).
   * @returns true to have that child sampled again soon (a first sample over the cap, to confirm)
   */
  onSample(c: Child, rssBytes: number, cpuPercent: number): boolean;
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
  const confirmations = new Set<Timer>();
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
      if (d.onSample(c, rss, cpu)) confirmSoon(c);
    }
  };
  const confirmSoon = (c: Child) => {
    const pid = c.proc!.pid;
    const t = clock.setTimeout(() => {
      confirmations.delete(t);
      if (c.proc?.pid === pid) void sampleTrees([c]);
    }, confirmDelayMs(d.memoryCheckIntervalMs));
    t.unref?.();
    confirmations.add(t);
  };
  const memory = clock.setInterval(() => {
    if (sampling) return;
    sampling = true;
    const live = [...d.children()].filter((c) => c.proc && (c.state === 'running' || c.state === 'starting'));
    void sampleTrees(live).finally(() => (sampling = false));
  }, d.memoryCheckIntervalMs);
  heartbeat.unref?.();
  memory.unref?.();
  return () => {
    clock.clearInterval(heartbeat);
    clock.clearInterval(memory);
    for (const t of confirmations) clock.clearTimeout(t);
  };
}

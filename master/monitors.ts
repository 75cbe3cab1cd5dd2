/**
 * The supervisor's periodic checks, each on one shared timer for every child
 * (OTP's one-timer-for-many): the heartbeat deadline and the memory sample. They
 * only read children and report through callbacks; the supervisor alone acts.
 */
import type { Child } from './child.js';
import { heartbeatCheckEveryMs, heartbeatOverdue, masterWasPaused } from './policy/deadlines.js';
import { confirmDelayMs } from './policy/memory.js';
import { sampleProcesses } from './resource-sampler.js';

/** What the monitors need; times in ms. */
export interface MonitorDeps {
  children: () => Iterable<Child>;
  now: () => number;
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
  const every = heartbeatCheckEveryMs(d.heartbeatTimeoutMs);
  let lastCheck = d.now();
  const heartbeat = setInterval(() => {
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
  const confirmations = new Set<NodeJS.Timeout>();
  const report = (list: Child[], samples: Awaited<ReturnType<typeof sampleProcesses>>) => {
    for (const c of list) {
      const s = c.proc ? samples.get(c.proc.pid) : undefined;
      if (s && d.onSample(c, s.rssBytes, s.cpuPercent)) confirmSoon(c);
    }
  };
  const confirmSoon = (c: Child) => {
    const pid = c.proc!.pid;
    const t = setTimeout(() => {
      confirmations.delete(t);
      if (c.proc?.pid === pid) void sampleProcesses([pid]).then((samples) => report([c], samples));
    }, confirmDelayMs(d.memoryCheckIntervalMs));
    t.unref();
    confirmations.add(t);
  };
  const memory = setInterval(() => {
    if (sampling) return;
    sampling = true;
    const live = [...d.children()].filter((c) => c.proc && (c.state === 'running' || c.state === 'starting'));
    void sampleProcesses(live.map((c) => c.proc!.pid)).then((samples) => report(live, samples)).finally(() => (sampling = false));
  }, d.memoryCheckIntervalMs);
  heartbeat.unref();
  memory.unref();
  return () => {
    clearInterval(heartbeat);
    clearInterval(memory);
    for (const t of confirmations) clearTimeout(t);
  };
}

/**
 * The supervisor's periodic checks, each on one shared timer for every child
 * (OTP's one-timer-for-many): the heartbeat deadline and the memory sample. They
 * only read children and report through callbacks; the supervisor alone acts.
 */
import type { Child } from './child.js';
import { heartbeatCheckEveryMs, heartbeatOverdue } from './policy/deadlines.js';
import { sampleProcesses } from './resource-sampler.js';

/** What the monitors need; times in ms. */
export interface MonitorDeps {
  children: () => Iterable<Child>;
  now: () => number;
  heartbeatTimeoutMs: number;
  memoryCheckIntervalMs: number;
  /** A running child missed its heartbeat deadline. */
  onHung(c: Child): void;
  /** A fresh RSS/CPU sample of a live child (bytes, percent of one core). */
  onSample(c: Child, rssBytes: number, cpuPercent: number): void;
}

/** Start both monitors. @returns a function that stops them. */
export function startMonitors(d: MonitorDeps): () => void {
  const heartbeat = setInterval(() => {
    const t = d.now();
    for (const c of d.children()) {
      if (c.state === 'running' && c.proc && heartbeatOverdue(c.lastHeartbeatAt, t, d.heartbeatTimeoutMs)) d.onHung(c);
    }
  }, heartbeatCheckEveryMs(d.heartbeatTimeoutMs));

  // One batched pidusage round per interval; a slow round is never overlapped by the next.
  let sampling = false;
  const memory = setInterval(() => {
    if (sampling) return;
    sampling = true;
    const live = [...d.children()].filter((c) => c.proc && (c.state === 'running' || c.state === 'starting'));
    void sampleProcesses(live.map((c) => c.proc!.pid)).then((samples) => {
      for (const c of live) {
        const s = c.proc ? samples.get(c.proc.pid) : undefined;
        if (s) d.onSample(c, s.rssBytes, s.cpuPercent);
      }
    }).finally(() => (sampling = false));
  }, d.memoryCheckIntervalMs);
  heartbeat.unref();
  memory.unref();
  return () => {
    clearInterval(heartbeat);
    clearInterval(memory);
  };
}

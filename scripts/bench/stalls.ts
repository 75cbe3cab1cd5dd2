/**
 * What the worst stalls of this process's main thread were made of: a timer every few ms
 * reads the thread's `/proc/self/task/<tid>/schedstat` (proc(5): time on a CPU, time
 * waiting on a run queue, ns), so a late tick splits into the time the thread ran (its own
 * work: the master's, when the master runs in this process), the time it waited for a core
 * (the machine's load), and the rest (blocked in the kernel: a spawn waiting for its
 * child's exec, a disk). The event loop's delay histogram stays the measure; this says why.
 */
import fs from 'node:fs';

/** One late tick: how late (ms) and its split (ms). */
export interface Stall { ms: number; runMs: number; waitMs: number; blockedMs: number }

/** The worst stall, and the most the thread itself ran within any one stall (ms). */
export interface StallReport { worst: Stall; maxRunMs: number }

/** Watch until `stop()`. Linux only; elsewhere the report is all zeros. */
export function watchStalls(everyMs = 5): { stop(): StallReport } {
  const none: Stall = { ms: 0, runMs: 0, waitMs: 0, blockedMs: 0 };
  let fd: number;
  try {
    fd = fs.openSync(`/proc/self/task/${process.pid}/schedstat`, 'r');
  } catch {
    return { stop: () => ({ worst: none, maxRunMs: 0 }) };
  }
  const buf = Buffer.alloc(128);
  const read = (): [number, number] => {
    const s = buf.toString('latin1', 0, fs.readSync(fd, buf, 0, buf.length, 0)).split(' ');
    return [Number(s[0]) / 1e6, Number(s[1]) / 1e6];
  };
  let worst = none;
  let maxRunMs = 0;
  let last = performance.now();
  let [run0, wait0] = read();
  const timer = setInterval(() => {
    const now = performance.now();
    const [run, wait] = read();
    const late = now - last - everyMs;
    if (late > everyMs) {
      const runMs = run - run0;
      const waitMs = wait - wait0;
      const stall = { ms: late, runMs, waitMs, blockedMs: Math.max(0, now - last - runMs - waitMs) };
      if (late > worst.ms) worst = stall;
      maxRunMs = Math.max(maxRunMs, runMs);
    }
    last = now;
    run0 = run;
    wait0 = wait;
  }, everyMs);
  return {
    stop() {
      clearInterval(timer);
      fs.closeSync(fd);
      return { worst, maxRunMs };
    },
  };
}

/** "X ms running, Y waiting for a core, Z blocked" of a stall. */
export const fmtStall = (s: Stall): string => `${s.runMs.toFixed(1)} ms running, ${s.waitMs.toFixed(1)} waiting for a core, ${s.blockedMs.toFixed(1)} blocked`;

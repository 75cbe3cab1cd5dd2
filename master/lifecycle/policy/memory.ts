/**
 * The memory-cap decision, pure. A bot is judged by what the kernel charges its cgroup
 * (anonymous + shared memory) when it has one; else by its processes' RSS, and, only
 * when that sum is over the cap, by their PSS, which counts a page shared by N of them
 * as 1/N each (300 `sleep`s summed to 449 MB of RSS). Over the cap on one sample, the
 * worker is killed at once, draining included: a drain is no time to keep growing
 * (a bot passed 150 MB to 468 MB while it drained, and to 3 GB with an update that never
 * settled). Bytes in, verdict out.
 */

/** The measures of one sample (bytes). `pss` is computed only when asked (it costs ~0.6 ms a process). */
export interface MemorySample {
  /** What the bot's cgroup is charged (anon + shmem), or null without a cgroup. */
  charged: number | null;
  /** The sum of its processes' RSS. */
  rss: number;
  /** The sum of their PSS, or null when it cannot be read. */
  pss(): number | null;
}

/** The bytes a bot is judged and shown by (see the module comment). */
export function judgedMemory(s: MemorySample, capBytes: number): number {
  if (s.charged !== null) return s.charged;
  if (s.rss <= capBytes) return s.rss;
  return s.pss() ?? s.rss;
}

/** Over the cap: kill now (reason `memory`). */
export const overMemoryCap = (bytes: number, capBytes: number): boolean => bytes > capBytes;

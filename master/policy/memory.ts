/**
 * The memory-cap decision, pure: a child is restarted (reason `memory`) when its
 * RSS is over the cap on two consecutive samples, so one spike (a large update,
 * a GC that has not run yet) does not cost a restart. Bytes in, verdict out.
 */

/** Consecutive over-cap samples needed before a restart. */
export const SAMPLES_OVER_CAP = 2;

/**
 * @param overBefore consecutive over-cap samples before this one
 * @returns the new count, and whether to restart now
 */
export function memoryVerdict(overBefore: number, rssBytes: number, capBytes: number): { over: number; restart: boolean } {
  const over = rssBytes > capBytes ? overBefore + 1 : 0;
  return { over, restart: over >= SAMPLES_OVER_CAP };
}

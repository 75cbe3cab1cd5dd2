/**
 * The memory-cap decision, pure: a child is restarted (reason `memory`) when its
 * RSS is over the cap on two consecutive samples, so one spike (a large update,
 * a GC that has not run yet) does not cost a restart. The second sample is not
 * left to the next round: it is taken {@link confirmDelayMs} after the first, so
 * a leak is stopped within about 1.25 check intervals of crossing the cap, not 2.
 * Bytes in, verdict out.
 */

/** Consecutive over-cap samples needed before a restart. */
export const SAMPLES_OVER_CAP = 2;

/** Delay (ms) of the confirmation sample after a first over-cap one: a quarter of the check interval, 250 ms to 5 s. */
export function confirmDelayMs(checkIntervalMs: number): number {
  return Math.min(5000, Math.max(250, Math.round(checkIntervalMs / 4)));
}

/**
 * @param overBefore consecutive over-cap samples before this one
 * @returns the new count, and whether to restart now
 */
export function memoryVerdict(overBefore: number, rssBytes: number, capBytes: number): { over: number; restart: boolean } {
  const over = rssBytes > capBytes ? overBefore + 1 : 0;
  return { over, restart: over >= SAMPLES_OVER_CAP };
}

/** True when this sample was the first over the cap, so a confirmation sample should follow soon. */
export function needsConfirmation(over: number): boolean {
  return over > 0 && over < SAMPLES_OVER_CAP;
}

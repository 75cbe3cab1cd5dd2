/**
 * The restart decision, pure: (restart history, how the child ended, now) -> action.
 * - Restart intensity is per bot: at most `maxRestarts` restarts in a sliding
 *   `periodMs` (OTP's intensity/period; systemd's StartLimitBurst/IntervalSec).
 *   One more and the bot is quarantined until the oldest restart leaves the window,
 *   as systemd's start limit frees itself.
 * - Backoff is exponential from `baseMs`, doubling per consecutive quick failure,
 *   capped at `capMs`. A run of at least `healthyRunMs` resets it: the first
 *   restart after a long healthy run is immediate.
 * - Exit code 78 (EX_CONFIG) means do not restart: quarantined with no retry time
 *   until an operator acts.
 * No timers, no I/O; `now` is ms on any clock used consistently.
 */

/** The knobs, from config (ms and counts). */
export interface RestartPolicy {
  maxRestarts: number;
  periodMs: number;
  baseMs: number;
  capMs: number;
  healthyRunMs: number;
}

/** What the supervisor remembers per bot between runs. */
export interface RestartHistory {
  /** When each restart inside the window happened (ms), oldest first. */
  restarts: number[];
  /** Quick failures in a row since the last healthy run. */
  consecutive: number;
}

/** The decision. `until` is when a quarantine frees itself (null: operator only). */
export type RestartAction =
  | { action: 'restart'; delayMs: number }
  | { action: 'quarantine'; until: number | null; why: string };

/** A fresh history. */
export const emptyHistory = (): RestartHistory => ({ restarts: [], consecutive: 0 });

/** Restarts still inside the window at `now`. */
export function restartsInWindow(h: RestartHistory, now: number, periodMs: number): number {
  return h.restarts.filter((t) => now - t < periodMs).length;
}

/**
 * Decide what to do after a child ended on its own.
 * @param ranMs how long the child ran (fork to exit)
 * @param doNotRestart the child exited with 78 (EX_CONFIG)
 * @returns the action and the new history (the input is not mutated)
 */
export function decideRestart(
  h: RestartHistory, p: RestartPolicy, now: number, ranMs: number, doNotRestart: boolean,
): { next: RestartHistory; act: RestartAction } {
  if (doNotRestart) return { next: h, act: { action: 'quarantine', until: null, why: 'exit code 78: do not restart' } };
  const recent = h.restarts.filter((t) => now - t < p.periodMs);
  if (recent.length >= p.maxRestarts) {
    const until = recent[0]! + p.periodMs;
    return { next: { ...h, restarts: recent }, act: { action: 'quarantine', until, why: `${recent.length} restarts within ${Math.round(p.periodMs / 1000)} s` } };
  }
  const consecutive = ranMs >= p.healthyRunMs ? 0 : h.consecutive;
  const delayMs = consecutive === 0 ? 0 : Math.min(p.capMs, p.baseMs * 2 ** (consecutive - 1));
  return { next: { restarts: [...recent, now], consecutive: consecutive + 1 }, act: { action: 'restart', delayMs } };
}

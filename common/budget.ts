/**
 * A per-second budget, pure: a fixed one-second window on an injected monotonic
 * clock (ms). Used for a worker's output bytes (over budget: lines dropped and
 * counted) and its message channel (over budget: a protocol violation).
 */

/** A budget; `take` is the only operation. */
export interface Budget {
  /** Spend `units` at `now` (ms); @returns false, spending nothing, when that would pass the window's limit. */
  take(units: number, now: number): boolean;
}

/** A budget of `limit` units per 1000 ms window. */
export function createBudget(limit: number): Budget {
  let windowStart = -Infinity;
  let spent = 0;
  return {
    take(units, now) {
      if (now - windowStart >= 1000) {
        windowStart = now;
        spent = 0;
      }
      if (spent + units > limit) return false;
      spent += units;
      return true;
    },
  };
}

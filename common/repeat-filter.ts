/**
 * Log the same error once per window: the first occurrence of a key is logged, the
 * repeats within `windowMs` of it are counted, and one summary per window says how
 * many were suppressed (journald's RateLimitIntervalSec / syslog's "last message
 * repeated N times"). Pure: the caller gives the time and writes the lines.
 * Bounded: at most MAX_KEYS keys are tracked (the oldest are forgotten, their counts summarized).
 */
import { trimOldest } from './bounded-map.js';

/** Keys tracked at once (distinct errors of one bot). */
export const MAX_KEYS = 256;

/** A summary to write: `key` repeated `suppressed` times after it was logged, in the window starting at `since`. */
export interface Suppressed { key: string; suppressed: number; since: number }

export interface RepeatFilter {
  /** An occurrence of `key` at `now` (ms). @returns true when it is to be logged; summaries of ended windows go to `flush` first. */
  seen(key: string, now: number): boolean;
  /** Summaries of windows ended by `now` (all of them with `all`), each once. */
  flush(now: number, all?: boolean): Suppressed[];
}

export function createRepeatFilter(windowMs: number): RepeatFilter {
  const windows = new Map<string, { since: number; suppressed: number }>();
  const ended: Suppressed[] = [];
  const close = (key: string, w: { since: number; suppressed: number }) => {
    windows.delete(key);
    if (w.suppressed > 0) ended.push({ key, suppressed: w.suppressed, since: w.since });
  };
  return {
    seen(key, now) {
      const w = windows.get(key);
      if (w && now - w.since < windowMs) {
        w.suppressed++;
        return false;
      }
      if (w) close(key, w);
      windows.set(key, { since: now, suppressed: 0 });
      if (windows.size > MAX_KEYS) {
        const before = new Map(windows);
        trimOldest(windows, MAX_KEYS);
        for (const [k, v] of before) if (!windows.has(k)) close(k, v);
      }
      return true;
    },
    flush(now, all = false) {
      for (const [k, w] of windows) if (all || now - w.since >= windowMs) close(k, w);
      return ended.splice(0);
    },
  };
}

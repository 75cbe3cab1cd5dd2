/**
 * Dedup window: a pure record of recently seen `update_id`s per bot, so an update
 * Telegram (or the master) delivers twice is handled once. An id is remembered
 * for `windowMs`, at most `maxEntries` ids are kept (oldest dropped first, a tenth
 * of the bound at a time: common/bounded-map.ts), and expired ids are swept at most every `sweepEveryMs`. No timers, no I/O: the
 * caller passes `now` (ms, monotonic or wall, consistently).
 */
import { trimOldest } from '../common/bounded-map.js';

export interface DedupWindow {
  /** True if `updateId` was seen within the window (then it is a duplicate); records it otherwise. */
  seen(updateId: number, now: number): boolean;
  size(): number;
}

/** Defaults from DESIGN.md: 10000 entries, swept every 5 minutes. */
export function createDedupWindow(windowMs: number, maxEntries = 10_000, sweepEveryMs = 300_000): DedupWindow {
  // A Map iterates in insertion order, so the first keys are the oldest.
  const seenAt = new Map<number, number>();
  let lastSweep = -Infinity;
  const sweep = (now: number) => {
    for (const [id, at] of seenAt) {
      if (now - at < windowMs) break;
      seenAt.delete(id);
    }
    lastSweep = now;
  };
  return {
    seen(updateId, now) {
      if (now - lastSweep >= sweepEveryMs) sweep(now);
      const at = seenAt.get(updateId);
      if (at !== undefined) {
        if (now - at < windowMs) return true;
        seenAt.delete(updateId); // re-inserted below as the newest
      }
      seenAt.set(updateId, now);
      trimOldest(seenAt, maxEntries);
      return false;
    },
    size: () => seenAt.size,
  };
}

/**
 * Bounding an insertion-ordered Map by dropping its oldest keys. Dropping one key
 * per insert with `keys().next()` walks every deleted slot V8 keeps until it
 * rehashes: measured in the worker's dedup window, most of a busy bot's CPU per
 * update once past the bound. So the oldest tenth of the bound goes at once, in
 * one walk, and inserts in between cost nothing.
 */

/** When `map` holds more than `max` keys, drop the oldest so that `max - max/10` remain (at least one dropped). */
export function trimOldest<K, V>(map: Map<K, V>, max: number): void {
  if (map.size <= max) return;
  let drop = map.size - max + Math.max(1, Math.floor(max / 10)) - 1;
  for (const k of map.keys()) {
    if (drop-- <= 0) break;
    map.delete(k);
  }
}

/**
 * The status page's short memory: per bot, a ring of samples (RSS, handled and failed
 * update totals) taken every HISTORY_SAMPLE_MS over the last HISTORY_SPAN_MS, for the
 * panel's sparklines and the tiles' per-minute rates. Bounded: HISTORY_SLOTS samples a
 * bot (4 x 8 bytes each: ~2.9 KB a bot, ~2.9 MB at 1000 bots); a bot gone from the fleet
 * loses its ring at the next sample. Pure: the caller gives the time and the rows.
 */

/** Sampling period (ms). */
export const HISTORY_SAMPLE_MS = 10_000;
/** How far back the sparklines reach (ms). */
export const HISTORY_SPAN_MS = 15 * 60_000;
export const HISTORY_SLOTS = HISTORY_SPAN_MS / HISTORY_SAMPLE_MS;

/** What one sample reads from a status row. */
export interface HistoryRow { botId: string; rssBytes: number; updates: { handled: number; failed: number } }

/** A bot's samples, oldest first: `at` wall-clock ms, `rssBytes`, and the updates handled in each interval. */
export interface BotSeries { at: number[]; rssBytes: number[]; handled: number[] }

interface Ring { at: Float64Array; rss: Float64Array; handled: Float64Array; failed: Float64Array; n: number; head: number }

const newRing = (): Ring => ({
  at: new Float64Array(HISTORY_SLOTS), rss: new Float64Array(HISTORY_SLOTS),
  handled: new Float64Array(HISTORY_SLOTS), failed: new Float64Array(HISTORY_SLOTS), n: 0, head: 0,
});

/** The i-th oldest slot of a ring. */
const slot = (r: Ring, i: number) => (r.head - r.n + i + HISTORY_SLOTS) % HISTORY_SLOTS;

export interface FleetHistory {
  /** Take one sample of every row at `now` (wall-clock ms); bots not in `rows` are forgotten. */
  sample(now: number, rows: readonly HistoryRow[]): void;
  /** The bot's samples, oldest first (empty for an unknown bot). */
  series(botId: string): BotSeries;
  /**
   * Updates handled and failed per minute over the last minute (or the span sampled,
   * when at least one interval is), from the samples and the current totals; null before that.
   */
  perMinute(row: HistoryRow, now: number): { messages: number; errors: number } | null;
}

export function createFleetHistory(): FleetHistory {
  const rings = new Map<string, Ring>();
  return {
    sample(now, rows) {
      const seen = new Set<string>();
      for (const row of rows) {
        seen.add(row.botId);
        let r = rings.get(row.botId);
        if (!r) rings.set(row.botId, (r = newRing()));
        r.at[r.head] = now;
        r.rss[r.head] = row.rssBytes;
        r.handled[r.head] = row.updates.handled;
        r.failed[r.head] = row.updates.failed;
        r.head = (r.head + 1) % HISTORY_SLOTS;
        r.n = Math.min(HISTORY_SLOTS, r.n + 1);
      }
      for (const id of rings.keys()) if (!seen.has(id)) rings.delete(id);
    },
    series(botId) {
      const r = rings.get(botId);
      const out: BotSeries = { at: [], rssBytes: [], handled: [] };
      if (!r) return out;
      for (let i = 0; i < r.n; i++) {
        const k = slot(r, i);
        out.at.push(r.at[k]!);
        out.rssBytes.push(r.rss[k]!);
        // Totals only grow while the master runs; a first sample has no interval before it.
        out.handled.push(i === 0 ? 0 : Math.max(0, r.handled[k]! - r.handled[slot(r, i - 1)]!));
      }
      return out;
    },
    perMinute(row, now) {
      const r = rings.get(row.botId);
      if (!r || r.n === 0) return null;
      // The newest sample at least a minute old, else the oldest there is.
      let k = slot(r, 0);
      for (let i = r.n - 1; i >= 0; i--) {
        const j = slot(r, i);
        if (now - r.at[j]! >= 60_000) {
          k = j;
          break;
        }
      }
      const spanMs = now - r.at[k]!;
      if (spanMs < HISTORY_SAMPLE_MS / 2) return null;
      const scale = 60_000 / spanMs;
      return {
        messages: Math.max(0, row.updates.handled - r.handled[k]!) * scale,
        errors: Math.max(0, row.updates.failed - r.failed[k]!) * scale,
      };
    },
  };
}

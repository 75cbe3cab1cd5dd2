/**
 * A bot's counters since the master started, across its workers' restarts: each
 * heartbeat carries counts since that worker started, and what it adds since the
 * previous heartbeat of the same process is added here (Prometheus counters must not
 * go back when a worker is replaced). Pure; bounded whatever a worker sends.
 */
import { apiErrorKey, HANDLER_BUCKETS_S, type WorkerTelemetry } from '../../worker/protocol.js';

/** Distinct (method, code) rows kept per bot; more are added to method `other`. */
export const MAX_API_ERROR_ROWS = 64;

/** Counts since the master started. `handlerBuckets` per bucket of HANDLER_BUCKETS_S, not cumulative, +Inf last. */
export interface BotTotals {
  received: number;
  handled: number;
  failed: number;
  deduplicated: number;
  handlerBuckets: number[];
  handlerSecondsSum: number;
  /** Key `method code`. */
  apiErrors: Map<string, { method: string; code: string; count: number }>;
}

/** What one heartbeat says, since its worker started. */
export interface BeatCounts {
  messages: number;
  errors: number;
  telemetry?: WorkerTelemetry;
}

export function newTotals(): BotTotals {
  return { received: 0, handled: 0, failed: 0, deduplicated: 0, handlerBuckets: new Array<number>(HANDLER_BUCKETS_S.length + 1).fill(0), handlerSecondsSum: 0, apiErrors: new Map() };
}

/** `now - before`, or all of `now` when it went down (a count of another process). */
const delta = (now: number, before: number | undefined) => (before === undefined || now < before ? now : now - before);

/**
 * Add what `beat` counted since `prev` (the previous heartbeat of the same worker
 * process, null for its first) to `t`.
 */
export function addBeat(t: BotTotals, prev: BeatCounts | null, beat: BeatCounts): void {
  t.handled += delta(beat.messages, prev?.messages);
  t.failed += delta(beat.errors, prev?.errors);
  const now = beat.telemetry;
  if (!now) return;
  const before = prev?.telemetry;
  t.received += delta(now.received, before?.received);
  t.deduplicated += delta(now.deduplicated, before?.deduplicated);
  t.handlerSecondsSum += delta(now.handlerSecondsSum, before?.handlerSecondsSum);
  for (let i = 0; i < t.handlerBuckets.length; i++) t.handlerBuckets[i]! += delta(now.handlerBuckets[i] ?? 0, before?.handlerBuckets[i]);
  const was = new Map(before?.apiErrors.map(([m, c, n]) => [`${m} ${c}`, n]));
  for (const [method, code, count] of now.apiErrors) {
    const add = delta(count, was.get(`${method} ${code}`));
    if (add === 0) continue;
    const key = apiErrorKey(t.apiErrors, method, code, MAX_API_ERROR_ROWS);
    if (key === null) continue; // codes are HTTP statuses; a flood of them is dropped
    const row = t.apiErrors.get(key);
    if (row) row.count += add;
    else t.apiErrors.set(key, { method: key.slice(0, key.indexOf(' ')), code, count: add });
  }
}

/**
 * Per-child update bookkeeping: webhook updates waiting for their ack, updates a
 * polling worker has begun, and poison detection. An update in flight through
 * {@link MAX_UPDATE_DEATHS} fault deaths of its bot's workers is dead-lettered
 * instead of being handed out again, so one bad message cannot crash-loop a bot.
 */
import type { Update } from 'node-telegram-bot-api';
import { createBatcher } from '../common/batcher.js';
import type { Child, DeliverResult } from './child.js';
import type { WorkerProcess } from './child-process.js';

/** A webhook update not acked within this is answered 503 so Telegram redelivers it (Telegram waits about 60 s). */
export const ACK_TIMEOUT_MS = 55_000;
/** An update in flight through this many worker deaths is dead-lettered, not retried (poison update). */
export const MAX_UPDATE_DEATHS = 2;
/** Bound on remembered poison candidates per bot. */
const MAX_DEATH_RECORDS = 1000;

/** True (and forgotten) when `updateId` has been in flight through too many deaths. */
export function takePoison(c: Child, updateId: number): boolean {
  if ((c.deaths.get(updateId) ?? 0) < MAX_UPDATE_DEATHS) return false;
  c.deaths.delete(updateId);
  return true;
}

/** The update ids the next worker must skip (dead-letter) on sight. */
export const poisonIds = (c: Child): number[] => [...c.deaths].filter(([, n]) => n >= MAX_UPDATE_DEATHS).map(([id]) => id);

/** A polling worker began an update. */
export function onBegin(c: Child, updateId: number): void {
  c.inFlight.add(updateId);
}

/** An update settled in the worker: resolve its webhook waiters, forget it as a poison candidate. */
export function onAck(c: Child, updateId: number, ok: boolean, result?: DeliverResult): void {
  c.inFlight.delete(updateId);
  c.deaths.delete(updateId);
  const waiters = c.acks.get(updateId);
  c.acks.delete(updateId);
  for (const w of waiters ?? []) w(result ?? (ok ? 'acked' : 'failed'));
}

/** The worker process is gone: blame what was in flight if it was a fault, reject every waiter. */
export function onWorkerGone(c: Child, fault: boolean): void {
  if (fault) {
    for (const id of new Set([...c.inFlight, ...c.acks.keys()])) c.deaths.set(id, (c.deaths.get(id) ?? 0) + 1);
    while (c.deaths.size > MAX_DEATH_RECORDS) c.deaths.delete(c.deaths.keys().next().value as number);
  }
  c.inFlight.clear();
  c.outbox = null; // bound to the dead process; anything still queued is answered below
  for (const waiters of c.acks.values()) for (const w of waiters) w('unavailable');
  c.acks.clear();
}

/**
 * Queue `update` for the worker (sent with the others of this event-loop turn) and
 * resolve on its ack, its exit, or {@link ACK_TIMEOUT_MS}. A `replay` (from the
 * dead-letter queue) goes alone, flagged so the worker handles it whatever its skip
 * list and dedup window hold.
 */
export function sendAndAwaitAck(c: Child, proc: WorkerProcess, update: Update, replay = false): Promise<DeliverResult> {
  return new Promise<DeliverResult>((resolve) => {
    const timer = setTimeout(() => finish('timeout'), ACK_TIMEOUT_MS);
    const finish = (r: DeliverResult) => {
      clearTimeout(timer);
      resolve(r);
    };
    const list = c.acks.get(update.update_id) ?? [];
    list.push(finish);
    c.acks.set(update.update_id, list);
    if (replay) {
      try {
        proc.send({ v: 1, type: 'update', updates: [update], replay: true });
      } catch {
        onAck(c, update.update_id, false, 'unavailable');
      }
      return;
    }
    c.outbox ??= createBatcher<Update>((updates) => {
      try {
        proc.send({ v: 1, type: 'update', updates });
      } catch {
        // Only while this process is still the child's: otherwise onWorkerGone answered them.
        if (c.proc === proc) for (const u of updates) onAck(c, u.update_id, false, 'unavailable');
      }
    });
    c.outbox.push(update);
  });
}

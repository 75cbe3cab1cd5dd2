/**
 * Per-bot update bookkeeping, owned by the delivery wing: webhook updates waiting for
 * their ack, updates a polling worker has begun, and poison detection. An update in
 * flight through {@link MAX_UPDATE_DEATHS} fault deaths of its bot's workers is
 * dead-lettered instead of being handed out again, so one bad message cannot
 * crash-loop a bot. The lifecycle holds one {@link BotDelivery} per bot and calls
 * these functions; nothing here knows about processes beyond the {@link UpdateSink}.
 */
import type { Update } from 'node-telegram-bot-api';
import { createBatcher, type Batcher } from '../../common/batcher.js';
import type { DeliverResult } from '../../webhook-server/server.js';

/** A webhook update not acked within this is answered 503 so Telegram redelivers it (Telegram waits about 60 s). */
export const ACK_TIMEOUT_MS = 55_000;
/** An update in flight through this many worker deaths is dead-lettered, not retried (poison update). */
export const MAX_UPDATE_DEATHS = 2;
/** Bound on remembered poison candidates per bot. */
const MAX_DEATH_RECORDS = 1000;

/** One bot's updates between intake and ack. */
export interface BotDelivery {
  /** update_id -> who waits for its ack. */
  acks: Map<number, Array<(r: DeliverResult) => void>>;
  /** Webhook updates for the current worker, sent once per event-loop turn. */
  outbox: Batcher<Update> | null;
  /** Updates a polling worker has begun and not acked. */
  inFlight: Set<number>;
  /** update_id -> worker deaths it was in flight through (poison detection). */
  deaths: Map<number, number>;
}

/** Where updates go: the bot's current worker. @throws when it cannot take them (its channel is closed). */
export interface UpdateSink {
  send(m: { v: 1; type: 'update'; updates: Update[]; replay?: true }): void;
}

/** Empty bookkeeping for a new bot. */
export const newBotDelivery = (): BotDelivery => ({ acks: new Map(), outbox: null, inFlight: new Set(), deaths: new Map() });

/** True (and forgotten) when `updateId` has been in flight through too many deaths. */
export function takePoison(d: BotDelivery, updateId: number): boolean {
  if ((d.deaths.get(updateId) ?? 0) < MAX_UPDATE_DEATHS) return false;
  d.deaths.delete(updateId);
  return true;
}

/** The update ids the next worker must skip (dead-letter) on sight. */
export const poisonIds = (d: BotDelivery): number[] => [...d.deaths].filter(([, n]) => n >= MAX_UPDATE_DEATHS).map(([id]) => id);

/** A polling worker began an update. @returns how many it has begun and not acked. */
export function onBegin(d: BotDelivery, updateId: number): number {
  d.inFlight.add(updateId);
  return d.inFlight.size;
}

/** The worker dead-lettered an update itself: no longer a poison candidate. */
export function onWorkerDeadLetter(d: BotDelivery, updateId: number): void {
  d.deaths.delete(updateId);
}

/** An update settled in the worker: resolve its webhook waiters, forget it as a poison candidate. */
export function onAck(d: BotDelivery, updateId: number, ok: boolean, result?: DeliverResult): void {
  d.inFlight.delete(updateId);
  d.deaths.delete(updateId);
  const waiters = d.acks.get(updateId);
  d.acks.delete(updateId);
  for (const w of waiters ?? []) w(result ?? (ok ? 'acked' : 'failed'));
}

/** The worker process is gone: blame what was in flight if it was a fault, reject every waiter. */
export function onWorkerGone(d: BotDelivery, fault: boolean): void {
  if (fault) {
    for (const id of new Set([...d.inFlight, ...d.acks.keys()])) d.deaths.set(id, (d.deaths.get(id) ?? 0) + 1);
    while (d.deaths.size > MAX_DEATH_RECORDS) d.deaths.delete(d.deaths.keys().next().value as number);
  }
  d.inFlight.clear();
  d.outbox = null; // bound to the dead process; anything still queued is answered below
  for (const waiters of d.acks.values()) for (const w of waiters) w('unavailable');
  d.acks.clear();
}

/**
 * Queue `update` for the worker behind `sink` (sent with the others of this
 * event-loop turn) and resolve on its ack, its exit, or {@link ACK_TIMEOUT_MS}. A
 * `replay` (from the dead-letter queue) goes alone, flagged so the worker handles it
 * whatever its skip list and dedup window hold. `current` gives the bot's worker now:
 * when a send fails and `sink` is no longer it, its exit has answered the waiters.
 */
export function sendAndAwaitAck(d: BotDelivery, sink: UpdateSink, current: () => UpdateSink | null, update: Update, replay = false): Promise<DeliverResult> {
  return new Promise<DeliverResult>((resolve) => {
    const timer = setTimeout(() => finish('timeout'), ACK_TIMEOUT_MS);
    const finish = (r: DeliverResult) => {
      clearTimeout(timer);
      resolve(r);
    };
    const list = d.acks.get(update.update_id) ?? [];
    list.push(finish);
    d.acks.set(update.update_id, list);
    if (replay) {
      try {
        sink.send({ v: 1, type: 'update', updates: [update], replay: true });
      } catch {
        onAck(d, update.update_id, false, 'unavailable');
      }
      return;
    }
    d.outbox ??= createBatcher<Update>((updates) => {
      try {
        sink.send({ v: 1, type: 'update', updates });
      } catch {
        if (current() === sink) for (const u of updates) onAck(d, u.update_id, false, 'unavailable');
      }
    });
    d.outbox.push(update);
  });
}

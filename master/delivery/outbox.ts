/**
 * Poison tracking for polling bots, owned by the delivery wing: which updates a
 * polling worker has begun and not acked. An update in flight through
 * {@link MAX_UPDATE_DEATHS} fault deaths of its bot's workers is put on the next
 * worker's skip list (it dead-letters it on sight) instead of being handled again,
 * so one bad message cannot crash-loop a bot. Webhook updates get the same rule in
 * the journal (journal.ts). The lifecycle holds one {@link BotDelivery} per bot.
 */
import type { Update } from 'node-telegram-bot-api';
import { trimOldest } from '../../common/bounded-map.js';

/** An update in flight through this many worker deaths is dead-lettered, not retried (poison update). */
export const MAX_UPDATE_DEATHS = 2;
/** Bound on remembered poison candidates per bot. */
const MAX_DEATH_RECORDS = 1000;

/** One polling bot's updates between `begin` and ack. */
export interface BotDelivery {
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
export const newBotDelivery = (): BotDelivery => ({ inFlight: new Set(), deaths: new Map() });

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

/** An update settled in the worker: no longer in flight, no longer a poison candidate. */
export function onAck(d: BotDelivery, updateId: number): void {
  d.inFlight.delete(updateId);
  d.deaths.delete(updateId);
}

/** The worker process is gone: blame what was in flight if it was a fault. */
export function onWorkerGone(d: BotDelivery, fault: boolean): void {
  if (fault) {
    for (const id of d.inFlight) d.deaths.set(id, (d.deaths.get(id) ?? 0) + 1);
    trimOldest(d.deaths, MAX_DEATH_RECORDS);
  }
  d.inFlight.clear();
}

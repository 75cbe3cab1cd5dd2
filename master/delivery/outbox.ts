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
  /** The skip list handed to the current worker at `init`: ids it may dead-letter on sight. */
  skipGiven: Set<number>;
  /** When the current worker's recent `dlq` frames came (ms), for {@link MAX_DLQ_PER_MINUTE}. */
  dlqTimes: number[];
}

/** Dead letters one worker may report in a minute; more is a protocol violation (each one writes the registry). */
export const MAX_DLQ_PER_MINUTE = 30;

/** Where updates go: the bot's current worker. @throws when it cannot take them (its channel is closed). */
export interface UpdateSink {
  send(m: { v: 1; type: 'update'; updates: Update[]; replay?: true }): void;
}

/** Empty bookkeeping for a new bot. */
export const newBotDelivery = (): BotDelivery => ({ inFlight: new Set(), deaths: new Map(), skipGiven: new Set(), dlqTimes: [] });

/** The update ids the next worker must skip (dead-letter) on sight. */
export const poisonIds = (d: BotDelivery): number[] => [...d.deaths].filter(([, n]) => n >= MAX_UPDATE_DEATHS).map(([id]) => id);

/** A polling worker began an update. @returns how many it has begun and not acked. */
export function onBegin(d: BotDelivery, updateId: number): number {
  d.inFlight.add(updateId);
  return d.inFlight.size;
}

/** A new worker starts with `skip` as its skip list: it may dead-letter those, and what it begins. */
export function onWorkerStart(d: BotDelivery, skip: readonly number[]): void {
  d.skipGiven = new Set(skip);
  d.dlqTimes = [];
}

/**
 * Whether the worker may dead-letter `updateId` now (DESIGN.md: the protocol accepts only
 * what a worker may say): it must be in flight to that worker (begun, not acked) or on the
 * skip list it was given, and within {@link MAX_DLQ_PER_MINUTE}.
 * @returns null when allowed, else the violation (one line)
 */
export function deadLetterRefusal(d: BotDelivery, updateId: number, now: number): string | null {
  if (!d.inFlight.has(updateId) && !d.skipGiven.has(updateId)) return `a dead letter for update ${updateId}, which is not in flight to it`;
  d.dlqTimes = d.dlqTimes.filter((t) => now - t < 60_000);
  if (d.dlqTimes.length >= MAX_DLQ_PER_MINUTE) return `over ${MAX_DLQ_PER_MINUTE} dead letters in a minute`;
  d.dlqTimes.push(now);
  return null;
}

/** The worker dead-lettered an update itself: no longer a poison candidate. */
export function onWorkerDeadLetter(d: BotDelivery, updateId: number): void {
  d.deaths.delete(updateId);
  d.inFlight.delete(updateId);
  d.skipGiven.delete(updateId);
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

/**
 * Poison tracking for polling bots, owned by the delivery wing: which updates a polling
 * worker has begun and not acked, and the bot's suspects (delivery/poison.ts). The
 * master never holds a polled update's body, so the next worker is told: the suspects to
 * take one at a time (`probationUpdateIds`), and the poison to dead-letter on sight
 * (`skipUpdateIds`). Webhook updates get the same tracker in the journal (journal.ts).
 * The lifecycle holds one {@link BotDelivery} per bot.
 */
import type { Update } from 'node-telegram-bot-api';
import { forget, newPoisonState, onWorkerDeath, type PoisonState } from './poison.js';

/** One polling bot's updates between `begin` and ack. */
export interface BotDelivery {
  /** Updates a polling worker has begun and not acked. */
  inFlight: Set<number>;
  /** Its suspects and their solo deaths. */
  poison: PoisonState;
  /** Poison: the next worker dead-letters these on sight. */
  skip: Set<number>;
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
export const newBotDelivery = (): BotDelivery => ({ inFlight: new Set(), poison: newPoisonState(), skip: new Set(), skipGiven: new Set(), dlqTimes: [] });

/** The update ids the next worker must skip (dead-letter) on sight. */
export const poisonIds = (d: BotDelivery): number[] => [...d.skip];

/** The update ids the next worker must take one at a time, before the rest (probation). */
export const probationIds = (d: BotDelivery): number[] => [...d.poison.suspects];

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

/** The worker dead-lettered an update itself: settled. */
export function onWorkerDeadLetter(d: BotDelivery, updateId: number): void {
  forget(d.poison, updateId);
  d.inFlight.delete(updateId);
  d.skip.delete(updateId);
  d.skipGiven.delete(updateId);
}

/** An update settled in the worker: no longer in flight, no longer suspected. */
export function onAck(d: BotDelivery, updateId: number): void {
  d.inFlight.delete(updateId);
  forget(d.poison, updateId);
}

/** The worker process is gone: what was in flight becomes suspect when nobody explains the death (poison.ts). */
export function onWorkerGone(d: BotDelivery, unexplained: boolean): void {
  for (const id of onWorkerDeath(d.poison, [...d.inFlight], unexplained).poison) d.skip.add(id);
  d.inFlight.clear();
}

/**
 * How an update reaches its handler inside a worker: the skip list (poison updates
 * from earlier workers' deaths), the dedup window, `begin` and `ack` to the master
 * (batched; a begin never after its ack), and the per-chat ordered queue. Polled
 * updates are checked here; webhook updates were checked at the master's edge.
 */
import { Context, type Bot, type Update } from 'node-telegram-bot-api';
import type { Logger } from 'pino';
import { createBatcher, type Batcher } from '../common/batcher.js';
import { createChatQueue, type ChatKey, type ChatQueue } from './chat-queue.js';
import type { DedupWindow } from './dedup.js';
import type { Polling } from './polling.js';
import { POISON_REASON, updateProblem, type UpdateAck, type WorkerLastError, type WorkerMessage } from './protocol.js';
import type { Telemetry } from './telemetry.js';

/** Updates handled at once across chats before long polling waits for room. */
const MAX_IN_FLIGHT = 64;

/** Counts and the last error, shown in heartbeats; shared with the runtime. */
export interface RunStats {
  messages: number;
  errors: number;
  lastError: WorkerLastError | null;
}

/**
 * The chat an update belongs to, for per-chat ordering; updates with no chat run
 * unordered. A plain message (the common case) is read directly; every other kind
 * goes through the library's Context, which knows where each update type keeps
 * its chat (one Context fewer per update on the hot path).
 */
function chatKey(update: Update, bot: Bot): ChatKey {
  const chatId = (update as { message?: { chat?: { id?: unknown } } }).message?.chat?.id;
  if (typeof chatId === 'number') return chatId;
  // Malformed inside (a chat that is not an object, say): the library may throw; such an update runs unordered.
  try {
    const ctx = new Context(update, bot.api);
    const id = ctx.chat?.id ?? ctx.from?.id;
    if (typeof id === 'number' || typeof id === 'string') return id;
  } catch {
    // fall through
  }
  return `u${update.update_id}`;
}

/** What the intake is joined to. `failed`: updates whose handler error the library caught (bot.catch). */
export interface IntakeDeps {
  bot: Bot;
  mode: 'polling' | 'webhook';
  send(m: WorkerMessage): void;
  logger: Logger;
  dedup: DedupWindow;
  skip: Set<number>;
  telemetry: Telemetry;
  stats: RunStats;
  failed: WeakSet<Update>;
  describeError(err: unknown): WorkerLastError;
  /** With long polling: the offset bookkeeping (settles reported to it). */
  polling: Polling | null;
  /** Suspects of an earlier worker's death (polling): taken one at a time, before the rest (master/delivery/poison.ts). */
  probation?: Set<number>;
}

/** The intake: `accept` an update (from the master, or `replay`ed), `acceptPolled` one from getUpdates. */
export interface Intake {
  accept(update: Update, replay?: boolean): void;
  acceptPolled(update: Update): void;
  readonly queue: ChatQueue<Update>;
  /** Send the acks gathered so far. */
  flushAcks(): void;
}

/**
 * Runs one update's handler: counted, timed in telemetry, acked (ok: false when it
 * failed) and settled. `beforeRun` tells the master an update is in flight before its
 * handler can kill the worker (long polling). A plain function returning the library's
 * promise: an async wrapper was one more promise per update.
 */
function runsHandler(d: IntakeDeps, beforeRun: ((update: Update) => void) | null, done: (ack: UpdateAck) => void): (update: Update) => Promise<void> {
  const { bot, telemetry, stats } = d;
  return (update) => {
    stats.messages++;
    const began = performance.now();
    beforeRun?.(update);
    // A rejection here is the library failing outside any handler (a malformed update): an error, not a crash.
    return bot.handleUpdate(update).then(() => {
      done({ updateId: update.update_id, ok: !d.failed.has(update) });
      telemetry.handler((performance.now() - began) / 1000);
    }, (err: unknown) => {
      done({ updateId: update.update_id, ok: false });
      telemetry.handler((performance.now() - began) / 1000);
      stats.errors++;
      stats.lastError = d.describeError(err);
    });
  };
}

/** The intake over `d`: dedup, poison skips, per-chat order, batched begins and acks. */
export function createIntake(d: IntakeDeps): Intake {
  const { bot, logger, telemetry, stats } = d;
  const polling = d.mode === 'polling';
  const { begins, acks, beforeRun } = signals(d, () => lanes.active());
  /** Updates accepted whose handler has not settled yet (queued or running). */
  const handling = new Set<number>();
  const lanes = probationLanes(d.probation ?? new Set(), bot, handling);
  const settle = (id: number) => {
    handling.delete(id);
    lanes.settled(id);
    d.polling?.settle(id);
  };
  const handle = runsHandler(d, polling ? beforeRun : null, (ack) => {
    acks.push(ack);
    settle(ack.updateId);
  });
  const queue = createChatQueue(handle, MAX_IN_FLIGHT);

  const accept = (update: Update, replay = false): void => {
    telemetry.received();
    if (replay) d.skip.delete(update.update_id);
    else if (d.skip.delete(update.update_id)) {
      // It was in flight when earlier workers of this bot died: a poison update.
      logger.warn({ updateId: update.update_id }, `update dead-lettered: ${POISON_REASON}`);
      d.send({ v: 1, type: 'dlq', updateId: update.update_id, error: POISON_REASON, update });
      return;
    }
    if (!replay && d.dedup.seen(update.update_id, Date.now())) {
      telemetry.deduplicated();
      logger.debug({ updateId: update.update_id }, 'duplicate update dropped');
      if (polling) return; // a refetch below the offset: nobody waits for an ack
      // Still in its handler: the first one's ack answers for both. Acking now would tell
      // the master it was handled before it was.
      if (!handling.has(update.update_id)) acks.push({ updateId: update.update_id, ok: true });
      return;
    }
    handling.add(update.update_id);
    if (polling && !replay) d.polling?.track(update.update_id);
    queue.push(lanes.keyFor(update), update);
  };

  return {
    accept,
    acceptPolled(update) {
      const problem = updateProblem(update);
      if (problem === null) return accept(update);
      stats.errors++;
      deadLetterMalformed(d, begins, update, problem);
    },
    queue,
    flushAcks: () => acks.flushNow(),
  };
}

/**
 * A polled update that is not an Update: dead-lettered by id (its body not sent: it may not
 * serialize), begun first, since the master takes a dead letter only for an update in flight
 * to this worker; its offset is passed.
 */
function deadLetterMalformed(d: IntakeDeps, begins: { push(id: number): void; flushNow(): void }, update: Update, problem: string): void {
  const id = typeof (update as { update_id?: unknown })?.update_id === 'number' ? update.update_id : -1;
  d.logger.warn({ updateId: id, problem }, 'malformed update dead-lettered');
  if (id < 0) return;
  begins.push(id);
  begins.flushNow();
  d.send({ v: 1, type: 'dlq', updateId: id, error: `malformed update: ${problem}` });
}

/** The one lane every update takes while on probation: handled one at a time, in arrival order. */
const PROBATION_LANE = '\u0000probation';

/**
 * Probation for a polling worker: while a suspect of the last death is pending, every
 * update goes through one lane, one at a time (so a death names its culprit), until the
 * suspects have settled and the lane has emptied; then each chat has its own lane again
 * (order per chat holds: nothing of a chat runs beside what it queued in the lane). A
 * suspect below an update that arrives without it was never fetched again: forgotten.
 */
function probationLanes(probation: Set<number>, bot: Bot, handling: Set<number>): { keyFor(update: Update): ChatKey; settled(id: number): void; active(): boolean } {
  const inLane = new Set<number>();
  return {
    keyFor(update) {
      if (probation.size > 0) for (const id of probation) if (id < update.update_id && !handling.has(id)) probation.delete(id);
      if (probation.size === 0 && inLane.size === 0) return chatKey(update, bot);
      inLane.add(update.update_id);
      return PROBATION_LANE;
    },
    settled(id) {
      inLane.delete(id);
      probation.delete(id);
    },
    active: () => probation.size > 0 || inLane.size > 0,
  };
}

/**
 * The worker's begins and acks, batched per event-loop turn, and what runs before a polled
 * update's handler: its `begin`, so the master's "in flight" is what is running; on
 * probation also the acks gathered so far (one frame more per update, only then), so a death
 * names exactly the update that was running (master/delivery/poison.ts).
 */
function signals(d: IntakeDeps, onProbation: () => boolean): { begins: Batcher<number>; acks: Batcher<UpdateAck>; beforeRun(u: Update): void } {
  const begins = createBatcher<number>((updateIds) => d.send({ v: 1, type: 'begin', updateIds }));
  const acks = createBatcher<UpdateAck>((list) => {
    begins.flushNow(); // a begin must never arrive after its ack
    d.send({ v: 1, type: 'ack', acks: list });
  });
  return {
    begins, acks,
    beforeRun(u) {
      begins.push(u.update_id);
      if (onProbation()) acks.flushNow(); // flushes the begins first
      begins.flushNow();
    },
  };
}

/**
 * A worker's delivery frames, straight from its channel to the delivery wing: `begin`
 * (a polling worker took updates), `ack` (handlers settled: the journal forgets them),
 * `dlq` (an update dead-lettered by the worker, checked against what it may refuse).
 * The lifecycle is told only of a violation, to end the worker with reason `protocol`.
 */
import type { Update } from 'node-telegram-bot-api';
import type { Logger } from 'pino';
import type { WorkerMessage } from '../../worker/protocol.js';
import { deadLetterRefusal, onAck, onBegin, onWorkerDeadLetter, type BotDelivery } from './in-flight.js';

/**
 * Begun-not-acked updates tracked per polling worker before a flood of `begin` is a protocol
 * violation: a worker holds at most 64 updates in flight plus one getUpdates batch (100).
 */
export const MAX_TRACKED_IN_FLIGHT = 4096;

/** Where acks and dead letters go: the journal (webhook updates) and the dead-letter queue. */
export interface ChannelSinks {
  logger: Logger;
  /** Monotonic ms. */
  now(): number;
  journal?: { acked(botId: string, acks: ReadonlyArray<{ updateId: number; ok: boolean }>): void };
  onDeadLetter?(botId: string, updateId: number, update: Update | null, reason: string): void;
}

/** The frames this module takes. */
export type DeliveryFrame = Extract<WorkerMessage, { type: 'begin' | 'ack' | 'dlq' }>;

/** Whether a parsed frame is the delivery wing's. */
export const isDeliveryFrame = (m: WorkerMessage): m is DeliveryFrame => m.type === 'begin' || m.type === 'ack' || m.type === 'dlq';

/** Take one delivery frame of bot `botId`. @returns a protocol violation (the worker is to be killed), or null */
export function onDeliveryFrame(d: BotDelivery, botId: string, m: DeliveryFrame, s: ChannelSinks): string | null {
  switch (m.type) {
    case 'begin': {
      let begun = 0;
      for (const id of m.updateIds) begun = onBegin(d, id);
      return begun > MAX_TRACKED_IN_FLIGHT ? `over ${MAX_TRACKED_IN_FLIGHT} updates begun and not acked` : null;
    }
    case 'ack':
      for (const a of m.acks) onAck(d, a.updateId);
      s.journal?.acked(botId, m.acks);
      return null;
    case 'dlq': {
      const refused = deadLetterRefusal(d, m.updateId, s.now());
      if (refused) return refused;
      onWorkerDeadLetter(d, m.updateId);
      s.journal?.acked(botId, [{ updateId: m.updateId, ok: false }]);
      s.logger.warn({ botId, updateId: m.updateId, err: m.error }, 'update dead-lettered');
      s.onDeadLetter?.(botId, m.updateId, m.update ?? null, m.error);
      return null;
    }
  }
}

/**
 * `botfleet dlq replay`: each selected dead letter goes back into the journal (flagged
 * as a replay: handled even though its id was seen) and leaves the queue once
 * journaled; any other outcome is recorded on its row (DESIGN.md's dead-letter queue).
 * The journal delivers it when the bot's worker runs; a replay that kills the worker
 * counts as a fault as usual.
 */
import type { Update } from 'node-telegram-bot-api';
import type { Logger } from 'pino';
import { ErrorCodes, fail } from '../../common/errors.js';
import type { DeliverResult } from '../../webhook-server/server.js';
import type { DeadLetterQueue } from '../store/store.js';

/** What a replay needs: the store, and a way to put an update back into a bot's journal. */
export interface ReplayDeps {
  deadLetters: DeadLetterQueue;
  replay(botId: string, update: Update): Promise<DeliverResult>;
  logger: Logger;
}

/**
 * Replay one dead letter (`id`) or all of one bot's (`botId`).
 * @returns how many were journaled again, and the ids kept with their result
 * @throws BotfleetError `BF_ERR_BAD_INPUT` (no selection), `BF_ERR_BOT_NOT_FOUND` (nothing selected)
 */
export async function replayDeadLetters(d: ReplayDeps, req: { id?: number; botId?: string }): Promise<{ replayed: number; kept: Array<{ id: number; result: string }> }> {
  if (req.id === undefined && req.botId === undefined) throw fail(ErrorCodes.BAD_INPUT, 'dlq replay needs a dead letter id or --bot');
  const rows = await d.deadLetters.forReplay(req.id !== undefined ? { id: req.id } : { botId: req.botId! });
  if (rows.length === 0) throw fail(ErrorCodes.BOT_NOT_FOUND, req.id !== undefined ? `no dead letter with id ${req.id}` : `no dead letters for bot "${req.botId}"`);
  let replayed = 0;
  const kept: Array<{ id: number; result: string }> = [];
  for (const row of rows) {
    const result = await d.replay(row.botId, row.update);
    d.logger.info({ botId: row.botId, updateId: row.updateId, dlqId: row.id, result }, 'dead letter replayed');
    if (result === 'journaled' || result === 'duplicate') {
      await d.deadLetters.remove({ id: row.id });
      replayed++;
    } else {
      await d.deadLetters.replayFailed(row.id, result);
      kept.push({ id: row.id, result });
    }
  }
  return { replayed, kept };
}

/**
 * The journal's storage engines, seen from the delivery wing: what a batch of changes is
 * ({@link JournalOps}), what is read back at start, and an engine that commits one batch
 * at a time. Two engines: SQLite in the home (journal-sqlite.ts, committed by a thread of
 * its own) and PostgreSQL (pg/pg-journal.ts). The delivery wing's writer
 * (delivery/journal-writer.ts) gathers batches (group commit) over either.
 */

/** `full`: every commit is fsynced (survives power loss); `normal`: WAL without fsync per commit (survives a process crash). */
export type JournalSync = 'full' | 'normal';

/** Telegram keeps an unconfirmed update 24 h (Bot API, getUpdates); so do we, then it expires. */
export const PENDING_RETENTION_MS = 24 * 3600_000;

/**
 * One batch of changes, applied in one transaction. Times are ms since the epoch.
 * - `insert`: [bot, updateId, payload (compact JSON), receivedAt, replay 0|1]
 * - `ack`: [bot, updateId, ackedAt, fence?] — leaves `pending`, remembered in `acked`; with `fence`
 *   (a cluster's bot epoch) only while the bot's owner row holds it (a stale owner's ack is refused:
 *   the update stays pending for the new owner, at least once)
 * - `deaths`: [bot, updateId, deaths] — worker deaths the update was in flight through
 * - `expire`: drop pending older than `pendingBefore` and acked ids older than `ackedBefore`
 */
export interface JournalOps {
  insert: Array<[string, number, string, number, number]>;
  ack: Array<[string, number, number, number?]>;
  deaths: Array<[string, number, number]>;
  expire?: { pendingBefore: number; ackedBefore: number };
}

/** A pending row as loaded at start. */
export interface PendingRow { bot: string; update_id: number; payload: string; received_at: number; deaths: number; replay: number }

/** What the journal holds at start: pending updates (in `update_id` order per bot) and the ids acked since the dedup window began. */
export interface LoadedJournal { pending: PendingRow[]; acked: Array<{ bot: string; update_id: number; acked_at: number }> }

/**
 * The journal as a cluster's masters share it (PostgreSQL): any master journals an update for
 * any bot, the bot's owner reads what others committed. Times are ms since the epoch.
 */
export interface SharedJournalSource {
  /** `bot`'s pending rows whose ids are not in `known`, in `update_id` order, at most `limit`. */
  pendingOf(bot: string, known: readonly number[], limit: number): Promise<PendingRow[]>;
  /** `bot`'s ids acked since `since`, oldest first, at most `limit` (the newest). */
  ackedOf(bot: string, since: number, limit: number): Promise<Array<{ update_id: number; acked_at: number }>>;
  /** Called with a bot id after each commit that journaled updates for it (any master's), and with null when notifications may have been missed (at once and at each reconnection). @returns stop */
  watch(onBot: (bot: string | null) => void): () => Promise<void>;
}

/** One engine: read at start, then commit batches (one at a time: the writer never overlaps two). */
export interface JournalEngine {
  /** Present when the journal is shared by a cluster's masters (PostgreSQL): each master then delivers only the bots it owns, read from here. */
  shared?: SharedJournalSource;
  /** Everything pending and the ids acked since `ackedSince` (ms since the epoch). */
  load(ackedSince: number): Promise<LoadedJournal>;
  /** Apply one batch in one transaction. @returns once committed; rejects (nothing applied) when it failed */
  commit(ops: JournalOps): Promise<void>;
  /** Set once the engine can never commit again (its thread died): every write then fails at once. */
  dead(): Error | null;
  close(): Promise<void>;
}

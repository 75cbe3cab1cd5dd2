/**
 * The journal's SQLite file (`data/journal.db`, WAL, a file of its own beside the
 * registry): updates taken from Telegram and not yet acked (`pending`), and the ids
 * acked recently (`acked`, the durable dedup window). The writer thread applies
 * batches of {@link JournalOps} here, one transaction per batch; the master reads the
 * file once at start ({@link loadJournal}) and keeps its own index in memory.
 * `(bot, update_id)` is the primary key of both tables: an update is journaled once.
 */
import Database from 'better-sqlite3';

/** `full`: every commit is fsynced (survives power loss); `normal`: WAL without fsync per commit (survives a process crash). */
export type JournalSync = 'full' | 'normal';

/** Telegram keeps an unconfirmed update 24 h (Bot API, getUpdates); so do we, then it expires. */
export const PENDING_RETENTION_MS = 24 * 3600_000;

/**
 * One batch of changes, applied in one transaction. Times are ms since the epoch.
 * - `insert`: [bot, updateId, payload (compact JSON), receivedAt, replay 0|1]
 * - `ack`: [bot, updateId, ackedAt] — leaves `pending`, remembered in `acked`
 * - `deaths`: [bot, updateId, deaths] — worker deaths the update was in flight through
 * - `expire`: drop pending older than `pendingBefore` and acked ids older than `ackedBefore`
 */
export interface JournalOps {
  insert: Array<[string, number, string, number, number]>;
  ack: Array<[string, number, number]>;
  deaths: Array<[string, number, number]>;
  expire?: { pendingBefore: number; ackedBefore: number };
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS pending (
  bot TEXT NOT NULL, update_id INTEGER NOT NULL, payload TEXT NOT NULL,
  received_at INTEGER NOT NULL, deaths INTEGER NOT NULL DEFAULT 0, replay INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (bot, update_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS acked (
  bot TEXT NOT NULL, update_id INTEGER NOT NULL, acked_at INTEGER NOT NULL,
  PRIMARY KEY (bot, update_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS acked_by_time ON acked (acked_at);
CREATE INDEX IF NOT EXISTS pending_by_time ON pending (received_at);
`;

/**
 * Open (creating) the journal file with WAL and the given sync level.
 * @throws SqliteError when the file cannot be opened or is not a database
 */
export function openJournalDb(file: string, sync: JournalSync): Database.Database {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${sync === 'full' ? 'FULL' : 'NORMAL'}`);
  db.pragma('busy_timeout = 5000');
  db.exec(SCHEMA);
  return db;
}

/** Returns a function applying one batch of ops in one transaction. @throws SqliteError (the batch is rolled back) */
export function journalWriter(db: Database.Database): (ops: JournalOps) => void {
  const ins = db.prepare('INSERT OR IGNORE INTO pending (bot, update_id, payload, received_at, replay) VALUES (?, ?, ?, ?, ?)');
  const unack = db.prepare('DELETE FROM acked WHERE bot = ? AND update_id = ?');
  const del = db.prepare('DELETE FROM pending WHERE bot = ? AND update_id = ?');
  const ack = db.prepare('INSERT OR REPLACE INTO acked (bot, update_id, acked_at) VALUES (?, ?, ?)');
  const deaths = db.prepare('UPDATE pending SET deaths = ? WHERE bot = ? AND update_id = ?');
  const expirePending = db.prepare('DELETE FROM pending WHERE received_at < ?');
  const expireAcked = db.prepare('DELETE FROM acked WHERE acked_at < ?');
  return db.transaction((ops: JournalOps) => {
    for (const [bot, id, payload, at, replay] of ops.insert) {
      if (replay) unack.run(bot, id);
      ins.run(bot, id, payload, at, replay);
    }
    for (const [bot, id, n] of ops.deaths) deaths.run(n, bot, id);
    for (const [bot, id, at] of ops.ack) {
      del.run(bot, id);
      ack.run(bot, id, at);
    }
    if (ops.expire) {
      expirePending.run(ops.expire.pendingBefore);
      expireAcked.run(ops.expire.ackedBefore);
    }
  });
}

/** A pending row as loaded at start. */
export interface PendingRow { bot: string; update_id: number; payload: string; received_at: number; deaths: number; replay: number }

/** Everything still pending (in `update_id` order per bot) and the ids acked since `ackedSince`. */
export function loadJournal(db: Database.Database, ackedSince: number): { pending: PendingRow[]; acked: Array<{ bot: string; update_id: number; acked_at: number }> } {
  return {
    pending: db.prepare('SELECT bot, update_id, payload, received_at, deaths, replay FROM pending ORDER BY bot, update_id').all() as PendingRow[],
    acked: db.prepare('SELECT bot, update_id, acked_at FROM acked WHERE acked_at >= ? ORDER BY acked_at').all(ackedSince) as Array<{ bot: string; update_id: number; acked_at: number }>,
  };
}

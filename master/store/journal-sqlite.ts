/**
 * The journal's SQLite file (`data/journal.db`, WAL, a file of its own beside the
 * registry): updates taken from Telegram and not yet acked (`pending`), and the ids
 * acked recently (`acked`, the durable dedup window). The writer thread applies
 * batches of {@link JournalOps} here, one transaction per batch; the master reads the
 * file once at start ({@link loadJournal}) and keeps its own index in memory.
 * `(bot, update_id)` is the primary key of both tables: an update is journaled once.
 */
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { ErrorCodes, fail } from '../../common/errors.js';

import type { JournalEngine, JournalOps, JournalSync, LoadedJournal, PendingRow } from './journal-engine.js';

export type { JournalOps, JournalSync, PendingRow };

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

/** Everything still pending (in `update_id` order per bot) and the ids acked since `ackedSince`. */
export function loadJournal(db: Database.Database, ackedSince: number): LoadedJournal {
  return {
    pending: db.prepare('SELECT bot, update_id, payload, received_at, deaths, replay FROM pending ORDER BY bot, update_id').all() as PendingRow[],
    acked: db.prepare('SELECT bot, update_id, acked_at FROM acked WHERE acked_at >= ? ORDER BY acked_at').all(ackedSince) as Array<{ bot: string; update_id: number; acked_at: number }>,
  };
}

/**
 * The SQLite engine on `file`: read at start on the master's thread, committed by a writer
 * thread of its own (journal-thread.ts), so the master's loop never waits on fsync.
 * @returns once the thread has opened the file; @throws BotfleetError `BF_ERR_JOURNAL` when it cannot
 */
export async function openSqliteJournal(file: string, sync: JournalSync): Promise<JournalEngine> {
  const worker = new Worker(new URL('./journal-thread.js', import.meta.url), { workerData: { file, sync } });
  await new Promise<void>((resolve, reject) => {
    worker.once('message', () => resolve());
    worker.once('error', (e) => reject(fail(ErrorCodes.JOURNAL, `journal ${file} cannot be opened: ${e.message.split('\n')[0]}`, e)));
  });
  let seq = 0;
  let dead: Error | null = null;
  const waiting = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  const failAll = (e: Error) => {
    dead ??= e;
    for (const w of waiting.values()) w.reject(dead);
    waiting.clear();
  };
  worker.on('message', (m: { seq: number; error?: string }) => {
    const w = waiting.get(m.seq);
    waiting.delete(m.seq);
    if (m.error === undefined) w?.resolve();
    else w?.reject(fail(ErrorCodes.JOURNAL, `journal write failed: ${m.error}`));
  });
  worker.on('error', (e) => failAll(fail(ErrorCodes.JOURNAL, `journal writer thread failed: ${e.message.split('\n')[0]}`, e)));
  worker.on('exit', () => failAll(fail(ErrorCodes.JOURNAL, 'journal writer thread ended')));
  return {
    async load(ackedSince) {
      const db = openJournalDb(file, sync);
      try {
        return loadJournal(db, ackedSince);
      } finally {
        db.close();
      }
    },
    commit(ops) {
      if (dead) return Promise.reject(dead);
      return new Promise<void>((resolve, reject) => {
        waiting.set(++seq, { resolve, reject });
        worker.postMessage({ seq, ops });
      });
    },
    dead: () => dead,
    async close() {
      if (dead) return;
      // The thread answers batches in order: every earlier batch is answered before it exits.
      const exited = new Promise<void>((r) => worker.once('exit', () => r()));
      worker.postMessage('close');
      await exited;
    },
  };
}

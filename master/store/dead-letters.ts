/**
 * The dead-letter queue: updates botfleet gave up on, kept in the registry's SQLite
 * database so an operator can list them and replay them once the bot is fixed
 * (`botfleet dlq list|replay|rm`). An update lands here when its bot's worker died
 * twice while it was the only update in flight (a poison update: delivery/poison.ts). The update's JSON is stored whole, since replay needs it; listings show
 * only ids, kinds and sizes, never message text.
 */
import type Database from 'better-sqlite3';
import type { Update } from 'node-telegram-bot-api';

/** Most dead letters kept per bot; past it the oldest are dropped, so a poison flood cannot fill the disk. */
export const MAX_DEAD_LETTERS_PER_BOT = 1000;

/** One dead letter. Times are ms since the epoch. */
export interface DeadLetter {
  id: number;
  botId: string;
  updateId: number;
  /** The update's kind: its one field besides `update_id` (`message`, `callback_query`, ...). */
  kind: string;
  /** Size of the stored update JSON, bytes. */
  bytes: number;
  reason: string;
  at: number;
  replays: number;
  /** Outcome of the last replay (`failed`, `unavailable`, `timeout`, ...), null before any. */
  lastResult: string | null;
}

/** A dead letter with its update, for replay. */
export interface DeadLetterWithUpdate extends DeadLetter {
  update: Update;
}

/** Dead letters of the registry database. */
export interface DeadLetterStore {
  /** Keep `update` (a second copy of the same bot and update_id is ignored). */
  add(botId: string, update: Update, reason: string, at: number): void;
  /** Oldest first; one bot's, or all. */
  list(botId?: string): DeadLetter[];
  /** With their updates: one by id, or one bot's. Unknown ids give an empty list. */
  forReplay(sel: { id: number } | { botId: string }): DeadLetterWithUpdate[];
  /** Record a replay that did not settle the update. */
  replayFailed(id: number, result: string): void;
  /** How many dead letters each bot has (bots with none are absent). */
  countsByBot(): Map<string, number>;
  /** Forget dead letters: one by id, or one bot's. @returns how many were removed */
  remove(sel: { id: number } | { botId: string }): number;
}

/** The schema, as a registry migration. */
export const DEAD_LETTERS_SCHEMA = `CREATE TABLE dead_letters (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     bot_id TEXT NOT NULL,
     update_id INTEGER NOT NULL,
     update_json TEXT NOT NULL,
     reason TEXT NOT NULL,
     at INTEGER NOT NULL,
     replays INTEGER NOT NULL DEFAULT 0,
     last_result TEXT,
     UNIQUE (bot_id, update_id)
   )`;

const kindOf = (json: string): string => Object.keys(JSON.parse(json) as object).find((k) => k !== 'update_id') ?? 'unknown';

/** A dead letter from its row (either engine's). */
export function toDeadLetter(r: Record<string, unknown>): DeadLetter {
  const json = r.update_json as string;
  return {
    id: r.id as number, botId: r.bot_id as string, updateId: r.update_id as number, kind: kindOf(json), bytes: Buffer.byteLength(json),
    reason: r.reason as string, at: r.at as number, replays: r.replays as number, lastResult: (r.last_result as string | null) ?? null,
  };
}

/** The store on an open registry database (the table comes from the registry's migrations). */
export function openDeadLetters(db: Database.Database): DeadLetterStore {
  const insert = db.prepare('INSERT OR IGNORE INTO dead_letters (bot_id, update_id, update_json, reason, at) VALUES (?, ?, ?, ?, ?)');
  const trim = db.prepare(`DELETE FROM dead_letters WHERE bot_id = ? AND id NOT IN
    (SELECT id FROM dead_letters WHERE bot_id = ? ORDER BY id DESC LIMIT ${MAX_DEAD_LETTERS_PER_BOT})`);
  const where = (sel: { id: number } | { botId: string }): [string, string | number] => ('id' in sel ? ['id = ?', sel.id] : ['bot_id = ?', sel.botId]);
  return {
    add(botId, update, reason, at) {
      db.transaction(() => {
        insert.run(botId, update.update_id, JSON.stringify(update), reason, at);
        trim.run(botId, botId);
      })();
    },
    list(botId) {
      const rows = botId === undefined
        ? db.prepare('SELECT * FROM dead_letters ORDER BY id').all()
        : db.prepare('SELECT * FROM dead_letters WHERE bot_id = ? ORDER BY id').all(botId);
      return (rows as Record<string, unknown>[]).map(toDeadLetter);
    },
    forReplay(sel) {
      const [cond, arg] = where(sel);
      return (db.prepare(`SELECT * FROM dead_letters WHERE ${cond} ORDER BY id`).all(arg) as Record<string, unknown>[])
        .map((r) => ({ ...toDeadLetter(r), update: JSON.parse(r.update_json as string) as Update }));
    },
    countsByBot() {
      const rows = db.prepare('SELECT bot_id, COUNT(*) AS n FROM dead_letters GROUP BY bot_id').all() as Array<{ bot_id: string; n: number }>;
      return new Map(rows.map((r) => [r.bot_id, r.n]));
    },
    replayFailed(id, result) {
      db.prepare('UPDATE dead_letters SET replays = replays + 1, last_result = ? WHERE id = ?').run(result, id);
    },
    remove(sel) {
      const [cond, arg] = where(sel);
      return db.prepare(`DELETE FROM dead_letters WHERE ${cond}`).run(arg).changes;
    },
  };
}

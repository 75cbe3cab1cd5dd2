/**
 * The PostgreSQL engine of the store (node-postgres): restart history, dead letters and
 * meta on the shared database at DATABASE_URL, with the same behaviour as the SQLite
 * engine (test/store.test.ts runs one suite on both). Every statement runs on the bounded
 * pool with its timeouts (connect.ts); a failure is a `BF_ERR_STORE` naming the server,
 * never the password.
 */
import type pg from 'pg';
import type { Logger } from 'pino';
import { MAX_DEAD_LETTERS_PER_BOT, toDeadLetter } from '../dead-letters.js';
import { historyFromRow } from '../registry-schema.js';
import type { DeadLetterQueue, HistoryStore, MetaStore, Store } from '../store.js';
import { inTransaction, openPool, serverOf, storeCall, storeError, type PgOptions } from './connect.js';
import { migratePg } from './migrations.js';
import { BOTS_CHANNEL, pgBots } from './pg-bots.js';
import { listenPg, type PgListener } from './listen.js';
import { CLUSTER_CHANNEL, holdsEpoch, pgCluster } from './pg-cluster.js';
import { JOURNAL_CHANNEL, pgJournalEngine } from './pg-journal.js';

/**
 * Open the store at `o.url` and bring its schema up to date; `key` is the home's token key.
 * @throws BotfleetError `BF_ERR_STORE` (the server cannot be reached, or a migration failed)
 */
export async function openPgStore(o: PgOptions & { key: Buffer; logger?: Logger }): Promise<Store & { pool: pg.Pool }> {
  const pool = openPool(o);
  const q = <R extends pg.QueryResultRow>(what: string, sql: string, params: unknown[] = []) => storeCall(o.url, what, () => pool.query<R>(sql, params));
  try {
    await migratePg(pool);
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw storeError(err, 'migrating the schema', o.url);
  }
  const bots = pgBots(pool, o.key, o.url);
  const { watch, close: closeListener } = sharedListener(o.url, o.logger);
  await bots.changedSinceLastCheck(); // changes are counted from the open, as the SQLite engine counts them
  return {
    engine: 'postgres', pool, bots, where: serverOf(o.url), cluster: pgCluster(pool, o.url, (onChange) => watch(CLUSTER_CHANNEL, onChange), o.clusterTimeoutMs),
    journalEngine: async () => pgJournalEngine(pool, o.url, (onBot) => watch(JOURNAL_CHANNEL, onBot)),
    watchBots: (onChange) => watch(BOTS_CHANNEL, onChange),
    history: pgHistory(q),
    deadLetters: pgDeadLetters(q, pool, o.url),
    meta: pgMeta(q),
    close: async () => {
      await closeListener();
      await pool.end();
    },
  };
}

/**
 * One LISTEN connection for every wake-up of this store (the bots', the cluster's and the
 * journal's channels), made at the first subscription and ended with the last. A subscriber
 * gets each notification's payload, and null at each (re)connection (a notification may have
 * been missed) and once at once.
 */
function sharedListener(url: string, logger?: Logger): { watch(channel: string, onChange: (payload: string | null) => void): () => Promise<void>; close(): Promise<void> } {
  const handlers = new Map<string, Set<(payload: string | null) => void>>();
  const all = () => [...handlers.values()].flatMap((set) => [...set]);
  let listener: PgListener | null = null;
  const close = async () => {
    const l = listener;
    listener = null;
    await l?.close();
  };
  const watch = (channel: string, onChange: (payload: string | null) => void) => {
    if (!handlers.has(channel)) handlers.set(channel, new Set());
    handlers.get(channel)!.add(onChange);
    listener ??= listenPg({ url, channels: [BOTS_CHANNEL, CLUSTER_CHANNEL, JOURNAL_CHANNEL], onNotify: (ch, payload) => handlers.get(ch)?.forEach((f) => f(payload)), onConnected: () => all().forEach((f) => f(null)), ...(logger ? { logger } : {}) });
    onChange(null);
    return async () => {
      handlers.get(channel)?.delete(onChange);
      if (all().length === 0) await close();
    };
  };
  return { watch, close };
}

type Query = <R extends pg.QueryResultRow>(what: string, sql: string, params?: unknown[]) => Promise<pg.QueryResult<R>>;

function pgHistory(q: Query): HistoryStore {
  return {
    async save(botId, h, fence) {
      const r = await q('saving a restart history', `INSERT INTO restart_history (bot_id, restarts, consecutive, quarantined_until, do_not_restart, reason)
        SELECT $1, $2, $3, $4, $5, $6 WHERE ${holdsEpoch('$1', '$7')}
        ON CONFLICT (bot_id) DO UPDATE SET restarts = excluded.restarts, consecutive = excluded.consecutive, quarantined_until = excluded.quarantined_until,
          do_not_restart = excluded.do_not_restart, reason = excluded.reason`, [botId, JSON.stringify(h.restarts), h.consecutive, h.quarantinedUntil, h.doNotRestart, h.reason ?? null, fence ?? null]);
      return r.rowCount === 1;
    },
    async loadAll() {
      const r = await q('reading restart histories', 'SELECT * FROM restart_history');
      return new Map(r.rows.map((row: Record<string, unknown>) => [String(row.bot_id), historyFromRow(row)]));
    },
    async load(botId) {
      const r = await q('reading a restart history', 'SELECT * FROM restart_history WHERE bot_id = $1', [botId]);
      return r.rows[0] ? historyFromRow(r.rows[0] as Record<string, unknown>) : null;
    },
  };
}

function pgDeadLetters(q: Query, pool: pg.Pool, url: string): DeadLetterQueue {
  const where = (sel: { id: number } | { botId: string }): [string, string | number] => ('id' in sel ? ['id = $1', sel.id] : ['bot_id = $1', sel.botId]);
  return {
    add: (botId, update, reason, at, fence) => storeCall(url, 'keeping a dead letter', () => inTransaction(pool, async (c) => {
          if (fence !== undefined && !(await c.query<{ ok: boolean }>(`SELECT ${holdsEpoch('$1::text', '$2')} AS ok`, [botId, fence])).rows[0]!.ok) return false;
          await c.query('INSERT INTO dead_letters (bot_id, update_id, update_json, reason, at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (bot_id, update_id) DO NOTHING',
            [botId, update.update_id, JSON.stringify(update), reason, at]);
          await c.query(`DELETE FROM dead_letters WHERE bot_id = $1 AND id NOT IN (SELECT id FROM dead_letters WHERE bot_id = $1 ORDER BY id DESC LIMIT ${MAX_DEAD_LETTERS_PER_BOT})`, [botId]);
          return true;
    })),
    async list(botId) {
      const r = botId === undefined ? await q('listing dead letters', 'SELECT * FROM dead_letters ORDER BY id') : await q('listing dead letters', 'SELECT * FROM dead_letters WHERE bot_id = $1 ORDER BY id', [botId]);
      return r.rows.map(toDeadLetter);
    },
    async forReplay(sel) {
      const [cond, arg] = where(sel);
      const r = await q('reading dead letters', `SELECT * FROM dead_letters WHERE ${cond} ORDER BY id`, [arg]);
      return r.rows.map((row: Record<string, unknown>) => ({ ...toDeadLetter(row), update: JSON.parse(row.update_json as string) }));
    },
    async replayFailed(id, result) {
      await q('recording a replay', 'UPDATE dead_letters SET replays = replays + 1, last_result = $2 WHERE id = $1', [id, result]);
    },
    async countsByBot() {
      const r = await q<{ bot_id: string; n: number }>('counting dead letters', 'SELECT bot_id, count(*)::int AS n FROM dead_letters GROUP BY bot_id');
      return new Map(r.rows.map((row) => [row.bot_id, row.n]));
    },
    async remove(sel) {
      const [cond, arg] = where(sel);
      return (await q('removing dead letters', `DELETE FROM dead_letters WHERE ${cond}`, [arg])).rowCount ?? 0;
    },
  };
}

function pgMeta(q: Query): MetaStore {
  return {
    async get(key) {
      const r = await q<{ value: string }>('reading meta', 'SELECT value FROM meta WHERE key = $1', [key]);
      return r.rows[0]?.value ?? null;
    },
    async set(key, value) {
      await q('writing meta', 'INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value', [key, value]);
    },
  };
}

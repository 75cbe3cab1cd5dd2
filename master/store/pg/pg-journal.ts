/**
 * The journal on PostgreSQL: `journal_pending` and `journal_acked` (migrations.ts), the
 * same rows as the SQLite engine's `pending` and `acked`. One batch is one transaction of
 * set-based statements over arrays (`unnest`), so a batch of 500 updates costs a handful
 * of round trips, not 500: intake is `INSERT … ON CONFLICT DO NOTHING` (an update is
 * journaled once), an ack moves the id from pending to acked, and the batch's bots are
 * announced with `pg_notify('botfleet_journal', bot)` in the same commit (PostgreSQL
 * delivers a NOTIFY only if its transaction commits). The commit's promise resolves after
 * COMMIT returns: with `synchronous_commit` on (the server's default), after the WAL is
 * flushed, the promise of `JOURNAL_SYNC=full`.
 */
import type pg from 'pg';
import type { JournalEngine, JournalOps, LoadedJournal, PendingRow, SharedJournalSource } from '../journal-engine.js';
import { inTransaction, storeCall } from './connect.js';
import { holdsEpoch } from './pg-cluster.js';

/** The channel a commit NOTIFYs with the bots it journaled for (the payload is a bot id). */
export const JOURNAL_CHANNEL = 'botfleet_journal';

/** Keep the last of each (bot, update_id): one statement may not touch a row twice. */
function lastPerKey<T extends [string, number, ...unknown[]]>(rows: T[]): T[] {
  const m = new Map<string, T>();
  for (const r of rows) m.set(`${r[0]}\u0000${r[1]}`, r);
  return [...m.values()];
}

const col = <T>(rows: unknown[][], i: number) => rows.map((r) => r[i] as T);

/** Apply one batch (see JournalOps: inserts, then deaths, then acks, then expiry) on `c`, inside its transaction. */
async function applyBatch(c: pg.PoolClient, ops: JournalOps): Promise<void> {
  if (ops.insert.length > 0) {
    const rows = ops.insert;
    const replays = rows.filter((r) => r[4] === 1);
    if (replays.length > 0) {
      await c.query('DELETE FROM journal_acked a USING unnest($1::text[], $2::bigint[]) AS r(bot, id) WHERE a.bot = r.bot AND a.update_id = r.id', [col(replays, 0), col(replays, 1)]);
    }
    // An update already acked (within the dedup window) is not journaled again, whichever master took it; a replay's acked id was deleted above.
    await c.query(`INSERT INTO journal_pending (bot, update_id, payload, received_at, replay)
      SELECT bot, id, payload, at, replay = 1 FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::int[]) AS r(bot, id, payload, at, replay)
      WHERE NOT EXISTS (SELECT 1 FROM journal_acked a WHERE a.bot = r.bot AND a.update_id = r.id)
      ON CONFLICT (bot, update_id) DO NOTHING`, [col(rows, 0), col(rows, 1), col(rows, 2), col(rows, 3), col(rows, 4)]);
  }
  if (ops.deaths.length > 0) {
    const rows = lastPerKey(ops.deaths);
    await c.query(`UPDATE journal_pending p SET deaths = d.n FROM unnest($1::text[], $2::bigint[], $3::int[]) AS d(bot, id, n)
      WHERE p.bot = d.bot AND p.update_id = d.id`, [col(rows, 0), col(rows, 1), col(rows, 2)]);
  }
  if (ops.ack.length > 0) {
    const rows = lastPerKey(ops.ack);
    const fences = rows.map((r) => r[3] ?? null);
    // A fenced ack counts only while the bot's owner row holds its epoch.
    const live = holdsEpoch('a.bot', 'a.fence');
    await c.query(`DELETE FROM journal_pending p USING unnest($1::text[], $2::bigint[], $3::bigint[]) AS a(bot, id, fence)
      WHERE p.bot = a.bot AND p.update_id = a.id AND ${live}`, [col(rows, 0), col(rows, 1), fences]);
    await c.query(`INSERT INTO journal_acked (bot, update_id, acked_at) SELECT a.bot, a.id, a.at FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]) AS a(bot, id, at, fence)
      WHERE ${live} ON CONFLICT (bot, update_id) DO UPDATE SET acked_at = excluded.acked_at`, [col(rows, 0), col(rows, 1), col(rows, 2), fences]);
  }
  if (ops.expire) {
    await c.query('DELETE FROM journal_pending WHERE received_at < $1', [ops.expire.pendingBefore]);
    await c.query('DELETE FROM journal_acked WHERE acked_at < $1', [ops.expire.ackedBefore]);
  }
  const bots = [...new Set(ops.insert.map((r) => r[0]))];
  if (bots.length > 0) await c.query(`SELECT pg_notify('${JOURNAL_CHANNEL}', bot) FROM unnest($1::text[]) AS b(bot)`, [bots]);
}

/**
 * The PostgreSQL journal engine on an open, migrated pool (the store's). With `watch` (a
 * subscription to {@link JOURNAL_CHANNEL}) it is shared by a cluster's masters; without, it is
 * one master's (loaded whole at start). `close` leaves the pool to its owner.
 */
export function pgJournalEngine(pool: pg.Pool, url: string, watch?: SharedJournalSource['watch']): JournalEngine {
  return {
    ...(watch ? { shared: sharedSource(pool, url, watch) } : {}),
    load: (ackedSince): Promise<LoadedJournal> => storeCall(url, 'reading the journal', async () => {
        const pending = await pool.query<Omit<PendingRow, 'replay'> & { replay: boolean }>('SELECT bot, update_id, payload, received_at, deaths, replay FROM journal_pending ORDER BY bot, update_id');
        const acked = await pool.query<{ bot: string; update_id: number; acked_at: number }>('SELECT bot, update_id, acked_at FROM journal_acked WHERE acked_at >= $1 ORDER BY acked_at', [ackedSince]);
        return { pending: pending.rows.map((r) => ({ ...r, replay: r.replay ? 1 : 0 })), acked: acked.rows };
    }),
    commit: (ops) => storeCall(url, 'committing to the journal', () => inTransaction(pool, (c) => applyBatch(c, ops))),
    dead: () => null,
    close: async () => undefined,
  };
}

/** A bot's rows for its owner (shared-journal.ts). */
function sharedSource(pool: pg.Pool, url: string, watch: SharedJournalSource['watch']): SharedJournalSource {
  return {
    pendingOf: (bot, known, limit) => storeCall(url, "reading a bot's journal", async () => {
      const r = await pool.query<Omit<PendingRow, 'replay'> & { replay: boolean }>(`SELECT bot, update_id, payload, received_at, deaths, replay FROM journal_pending
      WHERE bot = $1 AND update_id <> ALL($2::bigint[]) ORDER BY update_id LIMIT $3`, [bot, known, limit]);
      return r.rows.map((row) => ({ ...row, replay: row.replay ? 1 : 0 }));
    }),
    ackedOf: (bot, since, limit) => storeCall(url, "reading a bot's acked ids", async () => {
      const r = await pool.query<{ update_id: number; acked_at: number }>('SELECT update_id, acked_at FROM journal_acked WHERE bot = $1 AND acked_at >= $2 ORDER BY acked_at DESC LIMIT $3', [bot, since, limit]);
      return r.rows.reverse();
    }),
    watch,
  };
}

/**
 * `botfleet store copy`: a one-machine home's SQLite state moved into a PostgreSQL
 * database, the way from one machine to a cluster (DESIGN.md). Everything goes, in one
 * PostgreSQL transaction: the bots (tokens as sealed by the home's key: the same key opens
 * them there), their uid slots, restart histories, dead letters, the journal's pending
 * updates and acked ids, and the bots API's ETag. Idempotent: a second copy of the same home
 * writes the same rows again (bots and histories replaced by the home's, the rest kept once).
 * A database that holds another fleet is refused: each home gets a fleet id (meta
 * `fleet_id`) at its first copy, and the database keeps the id of the fleet it holds.
 */
import fs from 'node:fs';
import crypto from 'node:crypto';
import Database from 'better-sqlite3';
import type pg from 'pg';
import { ErrorCodes, fail } from '../../common/errors.js';
import type { HomePaths } from '../../config/load.js';
import { loadEncryptionKey } from '../../config/secrets.js';
import { openHomeRegistry } from './registry.js';
import { ETAG_KEY } from './registry-sync.js';
import { inTransaction, serverOf, storeCall } from './pg/connect.js';
import { openPgStore } from './pg/pg-store.js';
import { BOTS_CHANNEL } from './pg/pg-bots.js';

/** The meta key of a fleet's identity (a random id made at the first copy). */
export const FLEET_ID_KEY = 'fleet_id';
/** Rows per INSERT … SELECT FROM unnest(…). */
const CHUNK = 1000;
/** The advisory lock key of a copy: two copies into one database run one after the other. */
const COPY_LOCK_KEY = '7093021302434047350';

/** What a copy wrote (rows per table) and where. */
export interface CopyReport {
  target: string;
  fleetId: string;
  bots: number;
  uidSlots: number;
  histories: number;
  deadLetters: number;
  pending: number;
  acked: number;
}

type Row = unknown[];
/** One table to copy: its columns in order with their PostgreSQL array types, and what a conflicting row does. */
interface TableCopy { table: string; columns: string[]; types: string[]; conflict: string; rows: Row[] }

/** The home's rows, read from its files (the registry migrated and its key checked first). */
function readHome(p: HomePaths, envKey: string | undefined): { tables: TableCopy[]; fleetId: string; etag: string | null } {
  const registry = openHomeRegistry(p, envKey); // migrates; @throws when the key opens none of its tokens
  const fleetId = registry.meta.get(FLEET_ID_KEY) ?? crypto.randomUUID();
  registry.meta.set(FLEET_ID_KEY, fleetId);
  const etag = registry.meta.get(ETAG_KEY);
  registry.close();
  const db = new Database(p.db, { readonly: true, fileMustExist: true });
  const all = (d: Database.Database, sql: string) => (d.prepare(sql).raw().all() as Row[]);
  const tables: TableCopy[] = [
    { table: 'bots', columns: ['id', 'name', 'token_enc', 'mode', 'handler', 'settings', 'api_root', 'enabled', 'source', 'invalid_reason', 'created_at', 'updated_at'],
      types: ['text', 'text', 'text', 'text', 'text', 'text', 'text', 'int', 'text', 'text', 'bigint', 'bigint'],
      conflict: `(id) DO UPDATE SET ${['name', 'token_enc', 'mode', 'handler', 'settings', 'api_root', 'enabled', 'source', 'invalid_reason', 'created_at', 'updated_at'].map((c) => `${c} = excluded.${c}`).join(', ')}`,
      rows: all(db, 'SELECT id, name, token_enc, mode, handler, settings, api_root, enabled, source, invalid_reason, created_at, updated_at FROM bots') },
    { table: 'bot_uids', columns: ['bot_id', 'slot'], types: ['text', 'int'], conflict: 'DO NOTHING', rows: all(db, 'SELECT bot_id, slot FROM bot_uids') },
    { table: 'restart_history', columns: ['bot_id', 'restarts', 'consecutive', 'quarantined_until', 'do_not_restart', 'reason'], types: ['text', 'text', 'int', 'bigint', 'boolean', 'text'],
      conflict: '(bot_id) DO UPDATE SET restarts = excluded.restarts, consecutive = excluded.consecutive, quarantined_until = excluded.quarantined_until, do_not_restart = excluded.do_not_restart, reason = excluded.reason',
      rows: all(db, 'SELECT bot_id, restarts, consecutive, quarantined_until, do_not_restart <> 0, reason FROM restart_history') },
    { table: 'dead_letters', columns: ['bot_id', 'update_id', 'update_json', 'reason', 'at', 'replays', 'last_result'], types: ['text', 'bigint', 'text', 'text', 'bigint', 'int', 'text'],
      conflict: 'DO NOTHING', rows: all(db, 'SELECT bot_id, update_id, update_json, reason, at, replays, last_result FROM dead_letters ORDER BY id') },
  ];
  db.close();
  const journal = fs.existsSync(p.journal) ? new Database(p.journal, { readonly: true, fileMustExist: true }) : null;
  tables.push(
    { table: 'journal_pending', columns: ['bot', 'update_id', 'payload', 'received_at', 'deaths', 'replay'], types: ['text', 'bigint', 'text', 'bigint', 'int', 'boolean'],
      conflict: 'DO NOTHING', rows: journal ? all(journal, 'SELECT bot, update_id, payload, received_at, deaths, replay <> 0 FROM pending') : [] },
    { table: 'journal_acked', columns: ['bot', 'update_id', 'acked_at'], types: ['text', 'bigint', 'bigint'], conflict: 'DO NOTHING', rows: journal ? all(journal, 'SELECT bot, update_id, acked_at FROM acked') : [] },
  );
  journal?.close();
  return { tables, fleetId, etag };
}

/** Insert `t.rows` in chunks of {@link CHUNK}, one statement each. */
async function insertAll(c: pg.PoolClient, t: TableCopy): Promise<void> {
  for (let i = 0; i < t.rows.length; i += CHUNK) {
    const chunk = t.rows.slice(i, i + CHUNK);
    const arrays = t.columns.map((_, col) => chunk.map((r) => r[col]));
    const params = t.types.map((ty, k) => `$${k + 1}::${ty}[]`).join(', ');
    await c.query(`INSERT INTO ${t.table} (${t.columns.join(', ')}) SELECT * FROM unnest(${params}) ON CONFLICT ${t.conflict}`, arrays);
  }
}

/** Refuse a database that holds another fleet; else mark it as this one's. */
async function claimFleet(c: pg.PoolClient, fleetId: string, where: string): Promise<void> {
  await c.query('SELECT pg_advisory_xact_lock($1)', [COPY_LOCK_KEY]);
  const held = (await c.query<{ value: string }>('SELECT value FROM meta WHERE key = $1', [FLEET_ID_KEY])).rows[0]?.value;
  if (held !== undefined && held !== fleetId) throw fail(ErrorCodes.STORE, `${where} holds another fleet (fleet id ${held}; this home's is ${fleetId}): nothing copied`);
  if (held === undefined && Number((await c.query<{ n: string }>('SELECT count(*) AS n FROM bots')).rows[0]!.n) > 0) {
    throw fail(ErrorCodes.STORE, `${where} already holds bots of a fleet made there, not copied from this home: nothing copied`);
  }
  await c.query('INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING', [FLEET_ID_KEY, fleetId]);
}

/**
 * Copy the home at `p` into the database at `url`, both keyed by the home's key (`envKey`,
 * else the key file). The home's master must be stopped (the caller checks).
 * @returns the rows of the home now in the database, per table
 * @throws BotfleetError `BF_ERR_STORE` (unreachable, another fleet there: nothing copied), `BF_ERR_KEY_MISSING`, `BF_ERR_CRYPTO`, `BF_ERR_REGISTRY`, `BF_ERR_BAD_INPUT` (no registry in the home)
 */
export async function copyHomeToPg(p: HomePaths, envKey: string | undefined, url: string): Promise<CopyReport> {
  if (!fs.existsSync(p.db)) throw fail(ErrorCodes.BAD_INPUT, `${p.db} does not exist: nothing to copy from this home`);
  const home = readHome(p, envKey);
  const where = serverOf(url);
  const store = await openPgStore({ url, key: loadEncryptionKey(envKey, p.keyFile, true), poolSize: 2 });
  try {
    await storeCall(url, 'copying the home', () => inTransaction(store.pool, async (c) => {
      await claimFleet(c, home.fleetId, where);
      for (const t of home.tables) await insertAll(c, t);
      if (home.etag !== null) await c.query('INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value', [ETAG_KEY, home.etag]);
      await c.query(`INSERT INTO meta (key, value) VALUES ('bots_version', '1') ON CONFLICT (key) DO UPDATE SET value = (meta.value::bigint + 1)::text`);
      await c.query(`SELECT pg_notify('${BOTS_CHANNEL}', '')`);
    }));
    const [bots, uidSlots, histories, deadLetters, pending, acked] = home.tables.map((t) => t.rows.length);
    return { target: where, fleetId: home.fleetId, bots: bots!, uidSlots: uidSlots!, histories: histories!, deadLetters: deadLetters!, pending: pending!, acked: acked! };
  } finally {
    await store.close();
  }
}

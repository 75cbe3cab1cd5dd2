/**
 * The PostgreSQL schema as versioned migrations, applied at start in one transaction
 * under an advisory lock (`pg_advisory_xact_lock`, PostgreSQL's "Advisory Locks"): two
 * masters starting at once migrate once, the second finds the work done. A database
 * holding a version this botfleet does not know is refused: it was migrated by a newer one.
 * Times are ms since the epoch (bigint) and flags of the bots 0 or 1, as the SQLite engine keeps
 * them, so both engines' rows read the same (registry-schema.ts).
 */
import type pg from 'pg';
import { ErrorCodes, fail } from '../../../common/errors.js';
import { inTransaction } from './connect.js';

/** The advisory lock key of botfleet's migrations (any constant; 0x626f74666c656574 is "botfleet"). */
export const MIGRATION_LOCK_KEY = '7093021302434047348';

/** One migration: applied once, in order. */
export interface PgMigration { version: number; name: string; sql: string }

/** Every migration, oldest first. Never edit one that shipped: add the next. */
export const PG_MIGRATIONS: readonly PgMigration[] = [
  {
    version: 1, name: 'the store: meta, bots, uid slots, restart history, dead letters, journal',
    sql: `
CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE bots (
  id text PRIMARY KEY, name text NOT NULL, token_enc text NOT NULL, mode text, handler text NOT NULL,
  settings text NOT NULL DEFAULT '{}', api_root text, enabled integer NOT NULL DEFAULT 1,
  source text NOT NULL DEFAULT 'local', invalid_reason text, created_at bigint NOT NULL, updated_at bigint NOT NULL);
CREATE TABLE bot_uids (bot_id text PRIMARY KEY, slot integer NOT NULL UNIQUE);
CREATE TABLE restart_history (
  bot_id text PRIMARY KEY, restarts text NOT NULL, consecutive integer NOT NULL, quarantined_until bigint,
  do_not_restart boolean NOT NULL DEFAULT false, reason text);
CREATE TABLE dead_letters (
  id bigserial PRIMARY KEY, bot_id text NOT NULL, update_id bigint NOT NULL, update_json text NOT NULL, reason text NOT NULL,
  at bigint NOT NULL, replays integer NOT NULL DEFAULT 0, last_result text, UNIQUE (bot_id, update_id));
CREATE INDEX dead_letters_by_bot ON dead_letters (bot_id, id);
CREATE TABLE journal_pending (
  bot text NOT NULL, update_id bigint NOT NULL, chat_id bigint, payload text NOT NULL, received_at bigint NOT NULL,
  deaths integer NOT NULL DEFAULT 0, replay boolean NOT NULL DEFAULT false, PRIMARY KEY (bot, update_id));
CREATE INDEX journal_pending_by_time ON journal_pending (received_at);
CREATE TABLE journal_acked (bot text NOT NULL, update_id bigint NOT NULL, acked_at bigint NOT NULL, PRIMARY KEY (bot, update_id));
CREATE INDEX journal_acked_by_time ON journal_acked (acked_at);
`,
  },
  {
    version: 2, name: 'the cluster: members with epochs and leases, bot owners with bot epochs',
    sql: `
CREATE SEQUENCE cluster_epochs;
CREATE TABLE cluster_members (
  member_id text PRIMARY KEY, epoch bigint NOT NULL, host text NOT NULL, pid integer NOT NULL,
  joined_at timestamptz NOT NULL DEFAULT now(), renewed_at timestamptz NOT NULL DEFAULT now(), expires_at timestamptz NOT NULL);
CREATE TABLE bot_owners (
  bot_id text PRIMARY KEY, member_id text NOT NULL, member_epoch bigint NOT NULL, bot_epoch bigint NOT NULL,
  since timestamptz NOT NULL DEFAULT now(), cause text NOT NULL);
`,
  },
];

/** The newest version this botfleet knows. */
export const PG_SCHEMA_VERSION = PG_MIGRATIONS[PG_MIGRATIONS.length - 1]!.version;

/**
 * Bring the database to {@link PG_SCHEMA_VERSION}. @returns the version found and the one left
 * @throws BotfleetError `BF_ERR_STORE` when the database is newer than this botfleet; the driver's error when a statement fails (nothing applied then)
 */
export async function migratePg(pool: pg.Pool): Promise<{ from: number; to: number }> {
  return inTransaction(pool, async (c) => {
    await c.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
    await c.query(`CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const r = await c.query<{ v: number | null }>('SELECT max(version) AS v FROM schema_migrations');
    const from = r.rows[0]?.v ?? 0;
    if (from > PG_SCHEMA_VERSION) throw fail(ErrorCodes.STORE, `the database's schema is version ${from}, newer than this botfleet's ${PG_SCHEMA_VERSION}: upgrade botfleet`);
    for (const m of PG_MIGRATIONS) {
      if (m.version <= from) continue;
      await c.query(m.sql);
      await c.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
    }
    return { from, to: PG_SCHEMA_VERSION };
  });
}

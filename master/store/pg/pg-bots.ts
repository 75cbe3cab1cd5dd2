/**
 * The bots on PostgreSQL: the registry's rules (registry.ts; the same row shapes, read by
 * the same pure functions) on the shared database. Tokens are encrypted with the home's key
 * before they leave the process. Every write bumps `meta.bots_version` and NOTIFYs
 * `botfleet_bots` in its own transaction, so any master sees any writer's change (the SQLite
 * engine's `PRAGMA data_version`). Uid slots are allocated under an advisory lock: two
 * masters allocating at once never take the same slot.
 */
import type pg from 'pg';
import { ErrorCodes, fail } from '../../../common/errors.js';
import type { BotSpec, InvalidBot } from '../../../config/bot-spec.js';
import { decryptToken, encryptToken } from '../../../config/secrets.js';
import { checkFields, rowToSpec } from '../registry-schema.js';
import { ETAG_KEY, planApiSync, planImport } from '../registry-sync.js';
import { newBotId, patchColumns, slugify, toListing } from '../registry-schema.js';
import type { BotRegistry } from '../store.js';
import { inTransaction, storeCall } from './connect.js';

/** The channel a change of the bots is announced on. */
export const BOTS_CHANNEL = 'botfleet_bots';
/** The advisory lock key of uid slot allocation. */
const UID_LOCK_KEY = '7093021302434047349';

type Q = (sql: string, params?: unknown[]) => Promise<pg.QueryResult<Record<string, unknown>>>;

/** Mark a change of the bots, inside the writing transaction. */
const bump = (c: pg.PoolClient) => c.query(`INSERT INTO meta (key, value) VALUES ('bots_version', '1') ON CONFLICT (key) DO UPDATE SET value = (meta.value::bigint + 1)::text;
  SELECT pg_notify('${BOTS_CHANNEL}', '')`);

/** What the parts of the engine share: reads, writes in a transaction that marks the change, the row checks. */
interface Ctx {
  pool: pg.Pool;
  key: Buffer;
  wrap<T>(what: string, fn: () => Promise<T>): Promise<T>;
  q: Q;
  write<T>(what: string, fn: (c: pg.PoolClient) => Promise<T>): Promise<T>;
  requireRow(c: pg.PoolClient, id: string, local: boolean): Promise<{ source: string }>;
}

/** The bots engine on an open, migrated pool; `key` is the home's token key. */
export function pgBots(pool: pg.Pool, key: Buffer, url: string): BotRegistry {
  const wrap = <T>(what: string, fn: () => Promise<T>) => storeCall(url, what, fn);
  const ctx: Ctx = {
    pool, key, wrap,
    q: (sql, params = []) => wrap('reading the bots', () => pool.query(sql, params)),
    write: (what, fn) => wrap(what, () => inTransaction(pool, async (c) => {
      const out = await fn(c);
      await bump(c);
      return out;
    })),
    async requireRow(c, id, local) {
      const row = (await c.query('SELECT source FROM bots WHERE id = $1 FOR UPDATE', [id])).rows[0] as { source: string } | undefined;
      if (!row) throw fail(ErrorCodes.BOT_NOT_FOUND, `no bot with id "${id}"`);
      if (local && row.source === 'api') throw fail(ErrorCodes.BAD_INPUT, `bot "${id}" comes from the bots API (BOTS_API_URL): change it there`);
      return row;
    },
  };
  return { ...botEdits(ctx), ...apiList(ctx), ...botReads(ctx), ...fleetSlots(ctx) };
}

/** The operator's edits. */
function botEdits({ key, write, requireRow }: Ctx): Pick<BotRegistry, 'add' | 'remove' | 'setEnabled' | 'update'> {
  return {
    add: (bot) => write('adding a bot', async (c) => {
      checkFields(bot);
      const now = Date.now();
      const insert = (id: string) => c.query(`INSERT INTO bots (id, name, token_enc, mode, handler, settings, api_root, enabled, created_at, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $8) ON CONFLICT (id) DO NOTHING`,
      [id, bot.name, encryptToken(key, bot.token), bot.mode ?? null, bot.handler ?? 'echo', JSON.stringify(bot.settings ?? {}), bot.apiRoot ?? null, now]);
      let id = newBotId(bot);
      if (bot.id !== undefined) {
        if ((await insert(id)).rowCount === 0) throw fail(ErrorCodes.BAD_INPUT, `a bot with id "${id}" already exists`);
        return id;
      }
      for (let n = 2; (await insert(id)).rowCount === 0; n++) id = `${slugify(bot.name)}-${n}`;
      return id;
    }),
    remove: (id) => write('removing a bot', async (c) => {
      const fromApi = (await requireRow(c, id, false)).source === 'api';
      await c.query('DELETE FROM bots WHERE id = $1', [id]);
      // The next poll fetches the whole document, so a bot the API still lists comes back.
      if (fromApi) await c.query('DELETE FROM meta WHERE key = $1', [ETAG_KEY]);
    }),
    setEnabled: (id, enabled) => write('changing a bot', async (c) => {
      await requireRow(c, id, true);
      await c.query('UPDATE bots SET enabled = $1, updated_at = $2 WHERE id = $3', [enabled ? 1 : 0, Date.now(), id]);
    }),
    update: (id, patch) => write('changing a bot', async (c) => {
      await requireRow(c, id, true);
      checkFields(patch);
      const cols = patchColumns(patch, key);
      if (cols.length === 0) return;
      await c.query(`UPDATE bots SET ${cols.map(([col], i) => `${col} = $${i + 1}`).join(', ')} WHERE id = $${cols.length + 1}`, [...cols.map(([, v]) => v), id]);
    }),
  };
}

/** The bots API's list and its ETag; `bots import`. */
function apiList({ key, q, write }: Ctx): Pick<BotRegistry, 'syncFromApi' | 'apiEtag' | 'importBots'> {
  return {
    importBots: (bots) => write('importing bots', async (c) => {
      const rows = new Map((await c.query('SELECT * FROM bots FOR UPDATE')).rows.map((r: Record<string, unknown>) => [String(r.id), r]));
      const plan = planImport(rows, key, bots, Date.now());
      const col = (rows: Array<Record<string, unknown>>, k: string) => rows.map((r) => r[k]);
      const all = [...plan.inserts, ...plan.updates];
      // One statement for the whole file (1000 bots: one round trip, not 1000).
      if (all.length > 0) await c.query(`INSERT INTO bots (id, name, token_enc, mode, handler, settings, api_root, enabled, created_at, updated_at, source, invalid_reason)
          SELECT id, name, tok, mode, handler, settings, api_root, enabled, at, at, 'local', NULL
          FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int[], $9::bigint[]) AS v(id, name, tok, mode, handler, settings, api_root, enabled, at)
          ON CONFLICT (id) DO UPDATE SET name = excluded.name, token_enc = excluded.token_enc, mode = excluded.mode, handler = excluded.handler, settings = excluded.settings,
            api_root = excluded.api_root, enabled = excluded.enabled, updated_at = excluded.updated_at, invalid_reason = NULL WHERE bots.source = 'local'`,
      ['id', 'name', 'token_enc', 'mode', 'handler', 'settings', 'api_root', 'enabled', 'now'].map((k) => col(all, k)));
      return plan.result;
    }),
    syncFromApi: (bots, etag) => write('applying the bots API list', async (c) => {
      const rows = new Map((await c.query('SELECT * FROM bots FOR UPDATE')).rows.map((r: Record<string, unknown>) => [String(r.id), r]));
      const plan = planApiSync(rows, key, bots, Date.now());
      for (const v of [...plan.inserts, ...plan.updates]) {
        await c.query(`INSERT INTO bots (id, name, token_enc, mode, handler, settings, api_root, enabled, created_at, updated_at, source, invalid_reason)
          VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, 'api', $10)
          ON CONFLICT (id) DO UPDATE SET name = excluded.name, token_enc = excluded.token_enc, mode = excluded.mode, handler = excluded.handler, settings = excluded.settings,
            api_root = excluded.api_root, enabled = excluded.enabled, updated_at = excluded.updated_at, invalid_reason = excluded.invalid_reason WHERE bots.source = 'api'`,
        [v.id, v.name, v.token_enc, v.mode, v.handler, v.settings, v.api_root, v.enabled, v.now, v.invalid_reason]);
      }
      if (plan.removes.length > 0) await c.query("DELETE FROM bots WHERE id = ANY($1::text[]) AND source = 'api'", [plan.removes]);
      if (etag === null) await c.query('DELETE FROM meta WHERE key = $1', [ETAG_KEY]);
      else await c.query('INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value', [ETAG_KEY, etag]);
      return plan.result;
    }),
    apiEtag: async () => ((await q('SELECT value FROM meta WHERE key = $1', [ETAG_KEY])).rows[0]?.value as string | undefined) ?? null,
  };
}

/** The fleet's view: every row as a spec or as invalid with its reason, the key check, changes by any writer. */
function botReads({ key, q }: Ctx): Pick<BotRegistry, 'list' | 'load' | 'keyOpensAToken' | 'changedSinceLastCheck'> {
  let seenVersion: string | null | undefined;
  return {
    list: async () => (await q('SELECT * FROM bots ORDER BY id')).rows.map(toListing),
    async load() {
      const specs: BotSpec[] = [];
      const invalid: InvalidBot[] = [];
      for (const r of (await q('SELECT * FROM bots ORDER BY id')).rows) {
        const parsed = rowToSpec(r, key);
        if ('reason' in parsed) invalid.push(parsed);
        else specs.push(parsed);
      }
      return { specs, invalid };
    },
    async keyOpensAToken() {
      const rows = (await q('SELECT token_enc FROM bots')).rows as Array<{ token_enc: string }>;
      return rows.length === 0 || rows.some((r) => {
        try {
          decryptToken(key, r.token_enc);
          return true;
        } catch {
          return false; // a single tampered row is that bot's problem, not the key's
        }
      });
    },
    async changedSinceLastCheck() {
      const v = ((await q("SELECT value FROM meta WHERE key = 'bots_version'")).rows[0]?.value as string | undefined) ?? null;
      const changed = seenVersion !== undefined && v !== seenVersion;
      seenVersion = v;
      return changed;
    },
  };
}

/** Uid slots: allocated under an advisory lock, so two masters never take the same one. */
function fleetSlots({ pool, q, wrap }: Ctx): Pick<BotRegistry, 'uidSlots' | 'allUidSlots'> {
  return {
    uidSlots: (botIds) => wrap('allocating uid slots', () => inTransaction(pool, async (c) => {
      const ids = [...new Set(botIds)];
      await c.query('SELECT pg_advisory_xact_lock($1)', [UID_LOCK_KEY]);
      // The new ones numbered on from the highest slot, in the order given.
      await c.query(`INSERT INTO bot_uids (bot_id, slot)
        SELECT t.id, (SELECT COALESCE(max(slot), -1) FROM bot_uids) + row_number() OVER (ORDER BY t.ord)
        FROM unnest($1::text[]) WITH ORDINALITY AS t(id, ord)
        WHERE NOT EXISTS (SELECT 1 FROM bot_uids b WHERE b.bot_id = t.id)`, [ids]);
      const rows = (await c.query('SELECT bot_id, slot FROM bot_uids WHERE bot_id = ANY($1::text[])', [ids])).rows as Array<{ bot_id: string; slot: number }>;
      return new Map(rows.map((r) => [r.bot_id, Number(r.slot)]));
    })),
    allUidSlots: async () => (await q('SELECT slot FROM bot_uids ORDER BY slot')).rows.map((r) => Number(r.slot)),
  };
}

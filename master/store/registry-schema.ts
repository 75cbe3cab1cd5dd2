/**
 * The registry's schema and its rows: migrations by `PRAGMA user_version`, the field
 * checks of an edit, and a row turned into a child spec (or into an invalid bot with
 * its reason). Part of the registry (master/store/registry.ts); no I/O beyond the handle given.
 */
import type Database from 'better-sqlite3';
import { ErrorCodes, fail } from '../../common/errors.js';
import { BOT_ID_PATTERN, BOT_MODES, botFieldsProblem } from '../../config/bot-fields.js';
import { decryptToken, encryptToken, TOKEN_PATTERN } from '../../config/secrets.js';
import { DEAD_LETTERS_SCHEMA } from './dead-letters.js';
import type { BotModeSetting, BotSpec, InvalidBot } from '../../config/bot-spec.js';
import type { BotListing, NewBot, StoredHistory } from './registry.js';

/** Migrations by `PRAGMA user_version`: index i brings the schema from version i to i+1. */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE bots (
     id TEXT PRIMARY KEY,
     name TEXT NOT NULL,
     token_enc TEXT NOT NULL,
     mode TEXT,
     handler TEXT NOT NULL DEFAULT 'echo',
     settings TEXT NOT NULL DEFAULT '{}',
     api_root TEXT,
     enabled INTEGER NOT NULL DEFAULT 1,
     created_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL
   )`,
  DEAD_LETTERS_SCHEMA,
  // A bot id's uid slot (WORKER_UID_BASE + slot): given once, never reused, so a uid always means one bot.
  `CREATE TABLE bot_uids (bot_id TEXT PRIMARY KEY, slot INTEGER NOT NULL UNIQUE)`,
  // Restart history, so a bot that keeps killing its worker stays quarantined across master restarts. Times: wall-clock ms.
  `CREATE TABLE restart_history (bot_id TEXT PRIMARY KEY, restarts TEXT NOT NULL, consecutive INTEGER NOT NULL, quarantined_until INTEGER, do_not_restart INTEGER NOT NULL DEFAULT 0)`,
  // Where a row comes from ('local': the CLI; 'api': BOTS_API_URL, the last good list), why an API entry may not start,
  // and small master facts (the bots API's ETag).
  `ALTER TABLE bots ADD COLUMN source TEXT NOT NULL DEFAULT 'local';
   ALTER TABLE bots ADD COLUMN invalid_reason TEXT;
   CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`,
  // Why a bot is quarantined until an operator acts (a 401, a handler its uid cannot read, a full data directory): shown again after a master restart.
  `ALTER TABLE restart_history ADD COLUMN reason TEXT`,
];

/** Bring `db` to the newest schema, one transaction per step. A database from a newer botfleet is left alone. */
export function migrate(db: Database.Database): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  for (let v = version; v < MIGRATIONS.length; v++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[v]!);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
}

/** Fields accepted by `Registry.update` (and checked on `add`); absent = unchanged. Rules: config/bot-fields.ts. */
export interface BotPatch {
  name?: string;
  token?: string;
  mode?: BotModeSetting;
  handler?: string;
  settings?: Record<string, unknown>;
  apiRoot?: string | null;
}

/** @throws BotfleetError `BF_ERR_BAD_INPUT` with the first problem of an edit (never the token) */
export function checkFields(b: BotPatch): void {
  const problem = botFieldsProblem(b);
  if (problem !== null) throw fail(ErrorCodes.BAD_INPUT, problem);
}

/** Turn a row into a spec, or into an {@link InvalidBot} with the first problem found. */
export function rowToSpec(r: Record<string, unknown>, key: Buffer): BotSpec | InvalidBot {
  const id = String(r.id);
  const name = String(r.name);
  const enabled = r.enabled === 1;
  const bad = (reason: string): InvalidBot => ({ id, name, enabled, reason });
  if (!BOT_ID_PATTERN.test(id)) return bad(`id "${id.slice(0, 64)}" is not a valid bot id`);
  if (typeof r.invalid_reason === 'string') return bad(r.invalid_reason);
  let token: string;
  try {
    token = decryptToken(key, String(r.token_enc));
  } catch (err) {
    return bad((err as Error).message);
  }
  if (!TOKEN_PATTERN.test(token)) return bad('stored token is not a Telegram bot token');
  const mode = (r.mode as string | null) ?? null;
  if (mode !== null && !BOT_MODES.has(mode)) return bad(`mode "${mode.slice(0, 32)}" is not polling, webhook or auto`);
  let settings: unknown;
  try {
    settings = JSON.parse(String(r.settings));
  } catch {
    return bad('settings are not valid JSON');
  }
  if (typeof settings !== 'object' || settings === null || Array.isArray(settings)) return bad('settings are not a JSON object');
  return {
    id, name, token, enabled, mode: mode as BotModeSetting, handler: String(r.handler),
    settings: settings as Record<string, unknown>, apiRoot: (r.api_root as string | null) ?? null,
  };
}

/** A stored restart history from its row (either engine's: `do_not_restart` 1 or true); a damaged `restarts` reads as none. */
export function historyFromRow(r: Record<string, unknown>): StoredHistory {
  let restarts: unknown;
  try {
    restarts = JSON.parse(String(r.restarts));
  } catch {
    restarts = [];
  }
  return {
    restarts: Array.isArray(restarts) ? restarts.filter((t): t is number => typeof t === 'number') : [],
    consecutive: Number(r.consecutive) || 0,
    quarantinedUntil: typeof r.quarantined_until === 'number' ? r.quarantined_until : null,
    doNotRestart: r.do_not_restart === 1 || r.do_not_restart === true,
    reason: typeof r.reason === 'string' ? r.reason : null,
  };
}

/** A row as listed to users (either engine's row: `enabled` 1 or 0). */
export function toListing(r: Record<string, unknown>): BotListing {
  return {
    id: String(r.id), name: String(r.name), mode: (r.mode as BotModeSetting) ?? null, handler: String(r.handler),
    enabled: r.enabled === 1, settings: String(r.settings), createdAt: Number(r.created_at), updatedAt: Number(r.updated_at),
    source: r.source === 'api' ? 'api' : 'local', invalidReason: typeof r.invalid_reason === 'string' ? r.invalid_reason : null,
  };
}

/** The columns a patch sets, with their stored values (the token encrypted with `key`), `updated_at` last; none for an empty patch. */
export function patchColumns(patch: BotPatch, key: Buffer, now = Date.now()): Array<[string, unknown]> {
  const cols: Array<[string, unknown]> = [];
  if (patch.name !== undefined) cols.push(['name', patch.name]);
  if (patch.token !== undefined) cols.push(['token_enc', encryptToken(key, patch.token)]);
  if (patch.mode !== undefined) cols.push(['mode', patch.mode]);
  if (patch.handler !== undefined) cols.push(['handler', patch.handler]);
  if (patch.settings !== undefined) cols.push(['settings', JSON.stringify(patch.settings)]);
  if (patch.apiRoot !== undefined) cols.push(['api_root', patch.apiRoot]);
  if (cols.length > 0) cols.push(['updated_at', now]);
  return cols;
}

/** A new bot's id: what it asked for, else its name made an id. @throws BotfleetError `BF_ERR_BAD_INPUT` for an id that does not match BOT_ID_PATTERN */
export function newBotId(bot: NewBot): string {
  const id = bot.id ?? slugify(bot.name);
  if (!BOT_ID_PATTERN.test(id)) throw fail(ErrorCodes.BAD_INPUT, `id must match ${BOT_ID_PATTERN}, got "${id.slice(0, 80)}"`);
  return id;
}

/** Slug of a bot's name, as its id. */
export function slugify(name: string): string {
  const s = name.toLowerCase().normalize('NFKD').replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 48);
  return s || 'bot';
}

/**
 * The bot registry: a SQLite database (better-sqlite3, WAL) at
 * `<home>/data/botfleet.db`. Tokens are stored AES-256-GCM encrypted. The CLI
 * edits it with or without a running master; the master notices commits from
 * other connections through `PRAGMA data_version` (cheap to poll).
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { BotfleetError, ErrorCodes, errorMessage, fail } from '../../common/errors.js';
import type { ApiBot, ApiSyncResult } from '../../config/bots-api.js';
import { decryptToken, encryptToken, loadEncryptionKey } from '../../config/secrets.js';
import { openDeadLetters, type DeadLetterStore } from './dead-letters.js';
import { checkFields, historyFromRow, migrate, newBotId, patchColumns, rowToSpec, slugify, toListing, type BotPatch } from './registry-schema.js';

export { historyFromRow, newBotId, patchColumns, slugify, toListing };
import { forgetApiEtag, importRows, storedApiEtag, syncApiRows, type ImportResult } from './registry-sync.js';

import type { BotModeSetting, BotSpec, InvalidBot } from '../../config/bot-spec.js';

export type { BotModeSetting, BotPatch, BotSpec, InvalidBot };

/** A row as listed to users: never the token, only its masked form. */
export interface BotListing {
  id: string;
  name: string;
  mode: BotModeSetting;
  handler: string;
  enabled: boolean;
  settings: string;
  createdAt: number;
  updatedAt: number;
  /** `local`: added with the CLI; `api`: from BOTS_API_URL (edited there, not here). */
  source: 'local' | 'api';
  /** Why an API entry does not start, or null. */
  invalidReason: string | null;
}

/** Fields accepted by {@link Registry.add}. */
export interface NewBot {
  id?: string;
  name: string;
  token: string;
  mode?: BotModeSetting;
  handler?: string;
  settings?: Record<string, unknown>;
  apiRoot?: string | null;
}

export interface Registry {
  /** Insert a bot; returns its id. @throws `BF_ERR_BAD_INPUT` on a bad field or a taken id. */
  add(bot: NewBot): string;
  /** All rows, tokens left out. */
  list(): BotListing[];
  /** @throws `BF_ERR_BOT_NOT_FOUND` */
  remove(id: string): void;
  /** @throws `BF_ERR_BOT_NOT_FOUND`; `BF_ERR_BAD_INPUT` for a bot from the bots API (it is changed there) */
  setEnabled(id: string, enabled: boolean): void;
  /** @throws `BF_ERR_BOT_NOT_FOUND`, `BF_ERR_BAD_INPUT` (a bad field, or a bot from the bots API) */
  update(id: string, patch: BotPatch): void;
  /** Make the API's rows what `bots` lists, in one transaction, writing only what changed; keeps `etag` (see master/store/registry-sync.ts). */
  syncFromApi(bots: readonly ApiBot[], etag: string | null): ApiSyncResult;
  /** The ETag of the last API document applied, or null. */
  apiEtag(): string | null;
  /** `botfleet bots import`: many bots in one transaction (see registry-sync.ts's planImport). */
  importBots(bots: readonly ApiBot[]): ImportResult;
  /** Every row as a spec, or as invalid with its reason: one bad row never hides the rest. */
  load(): { specs: BotSpec[]; invalid: InvalidBot[] };
  /** True when the key decrypts at least one stored token, or none is stored (stops at the first that opens). */
  keyOpensAToken(): boolean;
  /** True when another connection committed since the last call. */
  changedSinceLastCheck(): boolean;
  /** The database file. */
  readonly file: string;
  /** The dead-letter queue, in the same database. */
  readonly deadLetters: DeadLetterStore;
  /** Small named values (the `meta` table). */
  readonly meta: { get(key: string): string | null; set(key: string, value: string): void };
  /** The bot id's uid slot, allocated (max + 1) on first use and never reused. */
  /** The bots' uid slots, allocated (max + 1, in order) on first use, in one transaction. */
  uidSlots(botIds: readonly string[]): Map<string, number>;
  /** Every slot ever allocated. */
  allUidSlots(): number[];
  /** Keep a bot's restart history (replaces the previous one). */
  saveHistory(botId: string, h: StoredHistory): void;
  /** Every stored restart history by bot id. */
  loadHistories(): Map<string, StoredHistory>;
  close(): void;
}

/** A bot's restart history as stored: wall-clock ms. `quarantinedUntil` null with `doNotRestart`: until an operator acts. */
export interface StoredHistory {
  restarts: number[];
  consecutive: number;
  quarantinedUntil: number | null;
  doNotRestart: boolean;
  /** Why, for a do-not-restart quarantine (its state reason). */
  reason?: string | null;
}

/** True when the database at `dbPath` exists and holds at least one encrypted token. */
export function registryHoldsTokens(dbPath: string): boolean {
  if (!fs.existsSync(dbPath)) return false;
  const db = new Database(dbPath, { readonly: true, fileMustExist: true });
  try {
    const t = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'bots'").get();
    return t !== undefined && db.prepare('SELECT 1 FROM bots LIMIT 1').get() !== undefined;
  } finally {
    db.close();
  }
}

/**
 * Open the home's registry with its key (`envKey` or `data/encryption.key`). A key
 * is generated only for a registry without tokens; with tokens, a missing key is
 * refused, and so is a key that decrypts none of them.
 * @throws BotfleetError `BF_ERR_KEY_MISSING`, `BF_ERR_CRYPTO` (one line, no secret)
 */
export function openHomeRegistry(p: { db: string; keyFile: string }, envKey: string | undefined): Registry {
  const holds = registryHoldsTokens(p.db);
  const registry = openRegistry(p.db, loadEncryptionKey(envKey, p.keyFile, holds));
  if (holds && !registry.keyOpensAToken()) {
    registry.close();
    throw fail(ErrorCodes.CRYPTO, `the encryption key decrypts none of the stored tokens: wrong ${envKey !== undefined ? 'BOTFLEET_ENCRYPTION_KEY' : p.keyFile}?`);
  }
  return registry;
}

/** Lower-case slug of a name, usable as a bot id and in a log file name. */
/**
 * Open (creating and migrating if needed) the registry.
 * @param key the 32-byte token key (see config/secrets.ts)
 */
export function openRegistry(dbPath: string, key: Buffer): Registry {
  const db = openDb(dbPath);
  let lastVersion = db.pragma('data_version', { simple: true }) as number;
  return {
    ...botEditing(db, key),
    ...botReading(db, key),
    ...fleetState(db),
    syncFromApi: (bots, etag) => syncApiRows(db, key, bots, etag),
    apiEtag: () => storedApiEtag(db),
    importBots: (bots) => importRows(db, key, bots),
    changedSinceLastCheck() {
      const v = db.pragma('data_version', { simple: true }) as number;
      const changed = v !== lastVersion;
      lastVersion = v;
      return changed;
    },
    file: dbPath,
    deadLetters: openDeadLetters(db),
    meta: {
      get: (k) => (db.prepare('SELECT value FROM meta WHERE key = ?').get(k) as { value: string } | undefined)?.value ?? null,
      set: (k, v) => void db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(k, v),
    },
    close() {
      db.close();
    },
  };
}

/** Open (creating its directory, 0700) and migrate the registry's database. @throws BotfleetError `BF_ERR_REGISTRY` naming the file */
function openDb(dbPath: string): Database.Database {
  fs.mkdirSync(path.dirname(dbPath), { recursive: true, mode: 0o700 });
  let db: Database.Database | undefined;
  try {
    db = new Database(dbPath);
    db.pragma('journal_mode = WAL');
    db.pragma('busy_timeout = 5000');
    migrate(db);
    return db;
  } catch (err) {
    db?.close();
    if (err instanceof BotfleetError) throw err;
    // Not a database, a newer schema, a read-only or full disk: one line naming the file, never the master's crash.
    throw fail(ErrorCodes.REGISTRY, `cannot open the registry ${dbPath}: ${errorMessage(err)}`, err);
  }
}

/** The operator's edits of bots (CLI, control socket). @throws BotfleetError `BF_ERR_BAD_INPUT`, `BF_ERR_BOT_NOT_FOUND` */
function botEditing(db: Database.Database, key: Buffer): Pick<Registry, 'add' | 'remove' | 'setEnabled' | 'update'> {
  const getRow = db.prepare('SELECT * FROM bots WHERE id = ?');
  const requireRow = (id: string): Record<string, unknown> => {
    const row = getRow.get(id) as Record<string, unknown> | undefined;
    if (!row) throw fail(ErrorCodes.BOT_NOT_FOUND, `no bot with id "${id}"`);
    return row;
  };
  /** A bot from the bots API is changed in the API: an edit here would be overwritten by the next document. */
  const requireLocal = (id: string): void => {
    if (requireRow(id).source === 'api') throw fail(ErrorCodes.BAD_INPUT, `bot "${id}" comes from the bots API (BOTS_API_URL): change it there`);
  };

  return {
    add(bot) {
      checkFields(bot);
      let id = newBotId(bot);
      if (bot.id === undefined) {
        for (let n = 2; getRow.get(id); n++) id = `${slugify(bot.name)}-${n}`;
      } else if (getRow.get(id)) throw fail(ErrorCodes.BAD_INPUT, `a bot with id "${id}" already exists`);
      const now = Date.now();
      db.prepare(`INSERT INTO bots (id, name, token_enc, mode, handler, settings, api_root, enabled, created_at, updated_at)
                  VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?)`)
        .run(id, bot.name, encryptToken(key, bot.token), bot.mode ?? null, bot.handler ?? 'echo', JSON.stringify(bot.settings ?? {}), bot.apiRoot ?? null, now, now);
      return id;
    },
    remove(id) {
      const fromApi = requireRow(id).source === 'api';
      db.transaction(() => {
        db.prepare('DELETE FROM bots WHERE id = ?').run(id);
        // The next poll fetches the whole document, so a bot the API still lists comes back.
        if (fromApi) forgetApiEtag(db);
      })();
    },
    setEnabled(id, enabled) {
      requireLocal(id);
      db.prepare('UPDATE bots SET enabled = ?, updated_at = ? WHERE id = ?').run(enabled ? 1 : 0, Date.now(), id);
    },
    update(id, patch) {
      requireLocal(id);
      checkFields(patch);
      const cols = patchColumns(patch, key);
      if (cols.length === 0) return;
      db.prepare(`UPDATE bots SET ${cols.map(([c]) => `${c} = ?`).join(', ')} WHERE id = ?`).run(...cols.map(([, v]) => v), id);
    },
  };
}

/** Reading the bots: the operator's list, the supervisor's specs (a bad row is that bot's reason), the key check. */
function botReading(db: Database.Database, key: Buffer): Pick<Registry, 'list' | 'load' | 'keyOpensAToken'> {
  return {
    list() {
      return (db.prepare('SELECT * FROM bots ORDER BY id').all() as Record<string, unknown>[]).map(toListing);
    },
    load() {
      const specs: BotSpec[] = [];
      const invalid: InvalidBot[] = [];
      for (const r of db.prepare('SELECT * FROM bots ORDER BY id').all() as Record<string, unknown>[]) {
        const parsed = rowToSpec(r, key);
        if ('reason' in parsed) invalid.push(parsed);
        else specs.push(parsed);
      }
      return { specs, invalid };
    },
    keyOpensAToken() {
      let stored = 0;
      for (const r of db.prepare('SELECT token_enc FROM bots').iterate() as Iterable<{ token_enc: string }>) {
        stored++;
        try {
          decryptToken(key, r.token_enc);
          return true;
        } catch {
          // try the next one: a single tampered row is that bot's problem, not the key's
        }
      }
      return stored === 0;
    },
  };
}

/** What the fleet keeps across master restarts: per-bot uid slots and restart histories. */
function fleetState(db: Database.Database): Pick<Registry, 'uidSlots' | 'allUidSlots' | 'saveHistory' | 'loadHistories'> {
  return {
    uidSlots(botIds) {
      const get = db.prepare('SELECT slot FROM bot_uids WHERE bot_id = ?').pluck();
      const add = db.prepare('INSERT INTO bot_uids (bot_id, slot) SELECT ?, COALESCE(MAX(slot) + 1, 0) FROM bot_uids RETURNING slot').pluck();
      return db.transaction((ids: readonly string[]) => {
        const out = new Map<string, number>();
        for (const id of ids) out.set(id, (get.get(id) ?? add.get(id)) as number);
        return out;
      })(botIds);
    },
    allUidSlots: () => (db.prepare('SELECT slot FROM bot_uids').all() as Array<{ slot: number }>).map((r) => r.slot),
    saveHistory(botId, h) {
      db.prepare(`INSERT INTO restart_history (bot_id, restarts, consecutive, quarantined_until, do_not_restart, reason) VALUES (?, ?, ?, ?, ?, ?)
        ON CONFLICT(bot_id) DO UPDATE SET restarts = excluded.restarts, consecutive = excluded.consecutive, quarantined_until = excluded.quarantined_until,
          do_not_restart = excluded.do_not_restart, reason = excluded.reason`)
        .run(botId, JSON.stringify(h.restarts), h.consecutive, h.quarantinedUntil, h.doNotRestart ? 1 : 0, h.reason ?? null);
    },
    loadHistories() {
      const out = new Map<string, StoredHistory>();
      for (const r of db.prepare('SELECT * FROM restart_history').all() as Array<Record<string, unknown>>) out.set(String(r.bot_id), historyFromRow(r));
      return out;
    },
  };
}

/**
 * The bots API's list kept in the registry (BOTS_API_URL): the last good list, so the
 * fleet starts and keeps running while the API is down. Part of the registry
 * (master/store/registry.ts). One transaction per document; a row is written only when
 * something in it changed, so an unchanged document costs no write at all.
 */
import type Database from 'better-sqlite3';
import { decryptToken, encryptToken } from '../../config/secrets.js';
import type { ApiBot, ApiSyncResult } from '../../config/bots-api.js';

/** The meta key of the last applied document's ETag. */
export const ETAG_KEY = 'bots_api_etag';

/** The stored ETag of the last document applied, or null. */
export function storedApiEtag(db: Database.Database): string | null {
  const row = db.prepare('SELECT value FROM meta WHERE key = ?').get(ETAG_KEY) as { value: string } | undefined;
  return row?.value ?? null;
}

/** Forget the stored ETag: the next poll fetches the whole document again. */
export function forgetApiEtag(db: Database.Database): void {
  db.prepare('DELETE FROM meta WHERE key = ?').run(ETAG_KEY);
}

/** The columns one API entry sets, as stored (the token compared decrypted: its ciphertext changes on every encryption). */
function sameRow(row: Record<string, unknown>, b: ApiBot, key: Buffer): boolean {
  if (row.name !== b.name || (row.mode ?? null) !== b.mode || row.handler !== b.handler || row.settings !== JSON.stringify(b.settings)) return false;
  if ((row.api_root ?? null) !== b.apiRoot || (row.enabled === 1) !== b.enabled || (row.invalid_reason ?? null) !== b.invalid) return false;
  try {
    return decryptToken(key, String(row.token_enc)) === b.token;
  } catch {
    return false;
  }
}

/** What a bots API document changes: rows to insert and update (stored values), ids to remove, and the result to report. */
export interface ApiSyncPlan {
  result: ApiSyncResult;
  inserts: Array<Record<string, unknown>>;
  updates: Array<Record<string, unknown>>;
  removes: string[];
}

/**
 * Plan making the API rows (`rows`: every bot row, either engine's) what `bots` lists.
 * Rows added with the CLI (source 'local') are never touched; an unchanged row is not written. Pure.
 */
export function planApiSync(rows: ReadonlyMap<string, Record<string, unknown>>, key: Buffer, bots: readonly ApiBot[], now: number): ApiSyncPlan {
  const plan: ApiSyncPlan = { result: { added: [], changed: [], removed: [], shadowed: [] }, inserts: [], updates: [], removes: [] };
  const listed = new Set<string>();
  for (const b of bots) {
    listed.add(b.id);
    const row = rows.get(b.id);
    if (row && row.source !== 'api') {
      plan.result.shadowed.push(b.id);
      continue;
    }
    if (row && sameRow(row, b, key)) continue;
    const values = {
      id: b.id, name: b.name, token_enc: encryptToken(key, b.token), mode: b.mode, handler: b.handler, settings: JSON.stringify(b.settings),
      api_root: b.apiRoot, enabled: b.enabled ? 1 : 0, invalid_reason: b.invalid, now,
    };
    (row ? plan.updates : plan.inserts).push(values);
    (row ? plan.result.changed : plan.result.added).push(b.id);
  }
  for (const [id, row] of rows) {
    if (row.source === 'api' && !listed.has(id)) {
      plan.removes.push(id);
      plan.result.removed.push(id);
    }
  }
  return plan;
}

/**
 * Make the registry's API rows what `bots` lists, and keep `etag`, in one transaction.
 * Rows added with the CLI (source 'local') are never touched.
 */
export function syncApiRows(db: Database.Database, key: Buffer, bots: readonly ApiBot[], etag: string | null, now = Date.now()): ApiSyncResult {
  const rows = new Map<string, Record<string, unknown>>();
  for (const r of db.prepare('SELECT * FROM bots').all() as Record<string, unknown>[]) rows.set(String(r.id), r);
  const plan = planApiSync(rows, key, bots, now);
  const insert = db.prepare(`INSERT INTO bots (id, name, token_enc, mode, handler, settings, api_root, enabled, created_at, updated_at, source, invalid_reason)
    VALUES (@id, @name, @token_enc, @mode, @handler, @settings, @api_root, @enabled, @now, @now, 'api', @invalid_reason)`);
  const update = db.prepare(`UPDATE bots SET name = @name, token_enc = @token_enc, mode = @mode, handler = @handler, settings = @settings,
    api_root = @api_root, enabled = @enabled, updated_at = @now, invalid_reason = @invalid_reason WHERE id = @id AND source = 'api'`);
  const remove = db.prepare("DELETE FROM bots WHERE id = ? AND source = 'api'");
  db.transaction(() => {
    for (const v of plan.inserts) insert.run(v);
    for (const v of plan.updates) update.run(v);
    for (const id of plan.removes) remove.run(id);
    if (etag !== storedApiEtag(db)) {
      if (etag === null) forgetApiEtag(db);
      else db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(ETAG_KEY, etag);
    }
  })();
  return plan.result;
}

/** What `botfleet bots import` did: ids added, changed and left as they were, and each entry refused with why. */
export interface ImportResult { added: string[]; changed: string[]; unchanged: string[]; refused: Array<{ entry: string; why: string }> }

/** What an import writes: rows to insert and update (stored values, source 'local') and the result to report. */
export interface ImportPlan { result: ImportResult; inserts: Array<Record<string, unknown>>; updates: Array<Record<string, unknown>> }

/**
 * Plan an import of `bots` (parsed as the bots API's document) over every bot row: a new id is
 * added, a local row that differs is changed, an identical one is left unwritten (a second import
 * of the same file changes nothing), an id held by the bots API's list and an invalid entry are
 * refused with why. Nothing is removed. Pure.
 */
export function planImport(rows: ReadonlyMap<string, Record<string, unknown>>, key: Buffer, bots: readonly ApiBot[], now: number): ImportPlan {
  const plan: ImportPlan = { result: { added: [], changed: [], unchanged: [], refused: [] }, inserts: [], updates: [] };
  for (const b of bots) {
    const row = rows.get(b.id);
    if (b.invalid !== null) plan.result.refused.push({ entry: b.id, why: b.invalid.replace(/^bots API: /, '') });
    else if (row && row.source === 'api') plan.result.refused.push({ entry: b.id, why: 'the id is held by a bot of the bots API (BOTS_API_URL): edit it there' });
    else if (row && sameRow(row, b, key)) plan.result.unchanged.push(b.id);
    else {
      const values = { id: b.id, name: b.name, token_enc: encryptToken(key, b.token), mode: b.mode, handler: b.handler, settings: JSON.stringify(b.settings), api_root: b.apiRoot, enabled: b.enabled ? 1 : 0, now };
      (row ? plan.updates : plan.inserts).push(values);
      (row ? plan.result.changed : plan.result.added).push(b.id);
    }
  }
  return plan;
}

/** Import `bots` into the registry in one transaction (see {@link planImport}). */
export function importRows(db: Database.Database, key: Buffer, bots: readonly ApiBot[], now = Date.now()): ImportResult {
  return db.transaction(() => {
    const rows = new Map<string, Record<string, unknown>>();
    for (const r of db.prepare('SELECT * FROM bots').all() as Record<string, unknown>[]) rows.set(String(r.id), r);
    const plan = planImport(rows, key, bots, now);
    const insert = db.prepare(`INSERT INTO bots (id, name, token_enc, mode, handler, settings, api_root, enabled, created_at, updated_at, source, invalid_reason)
      VALUES (@id, @name, @token_enc, @mode, @handler, @settings, @api_root, @enabled, @now, @now, 'local', NULL)`);
    const update = db.prepare(`UPDATE bots SET name = @name, token_enc = @token_enc, mode = @mode, handler = @handler, settings = @settings,
      api_root = @api_root, enabled = @enabled, updated_at = @now, invalid_reason = NULL WHERE id = @id AND source = 'local'`);
    for (const v of plan.inserts) insert.run(v);
    for (const v of plan.updates) update.run(v);
    return plan.result;
  }).immediate();
}


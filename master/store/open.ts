/**
 * Choosing and opening the store at start (DESIGN.md, "Storage"): PostgreSQL when
 * `DATABASE_URL` is set, else SQLite in the home. The token key is the home's either way
 * (`BOTFLEET_ENCRYPTION_KEY` or the key file); a key file is generated only while the store
 * holds no token, and a key that opens none of the stored tokens is refused.
 * {@link openStoreWaiting} is the master's form: a database that cannot be reached yet is
 * waited for with backoff, saying why, instead of ending the master.
 */
import fs from 'node:fs';
import crypto from 'node:crypto';
import type { Logger } from 'pino';
import { setTimeout as sleep } from 'node:timers/promises';
import { BotfleetError, ErrorCodes, errorMessage, fail } from '../../common/errors.js';
import { homePaths, type Config } from '../../config/load.js';
import { loadEncryptionKey } from '../../config/secrets.js';
import { openHomeRegistry } from './registry.js';
import { openSqliteStore, type Store } from './store.js';
import { openPgStore } from './pg/pg-store.js';
import { serverOf } from './pg/connect.js';

/** Where the store lives, for messages: the SQLite file, or `user@host:port/database` (never the password). */
export function storeWhere(cfg: Pick<Config, 'home' | 'databaseUrl'>): string {
  return cfg.databaseUrl ? `PostgreSQL ${serverOf(cfg.databaseUrl)}` : homePaths(cfg.home).db;
}

/** Settings of {@link openStore}: pool bounds for PostgreSQL (the CLI needs 2 connections, a master 8). */
export interface OpenStoreOptions {
  logger?: Logger;
  poolSize?: number;
  connectTimeoutMs?: number;
}

/**
 * The PostgreSQL store with the home's key. Without a key (no env, no key file) the
 * database is looked at first: holding bots, a new key would orphan their tokens.
 * @throws BotfleetError `BF_ERR_STORE`, `BF_ERR_KEY_MISSING`, `BF_ERR_CRYPTO`
 */
async function openPgWithKey(cfg: Config, url: string, o: OpenStoreOptions): Promise<Store> {
  const p = homePaths(cfg.home);
  const pg = { url, clusterTimeoutMs: cfg.clusterRenewDeadlineMs, ...(o.logger ? { logger: o.logger } : {}), ...(o.poolSize ? { poolSize: o.poolSize } : {}), ...(o.connectTimeoutMs ? { connectTimeoutMs: o.connectTimeoutMs } : {}) };
  if (cfg.encryptionKey === undefined && !fs.existsSync(p.keyFile)) {
    const probe = await openPgStore({ ...pg, key: crypto.randomBytes(32) });
    const holds = (await probe.bots.list().finally(() => probe.close())).length > 0;
    if (holds) throw fail(ErrorCodes.KEY_MISSING, `the database ${serverOf(url)} holds encrypted tokens but the key file ${p.keyFile} is missing: copy it from the home that made them or set BOTFLEET_ENCRYPTION_KEY (no new key was written)`);
    fs.mkdirSync(p.data, { recursive: true, mode: 0o700 });
  }
  const store = await openPgStore({ ...pg, key: loadEncryptionKey(cfg.encryptionKey, p.keyFile) });
  try {
    if (!(await store.bots.keyOpensAToken())) throw fail(ErrorCodes.CRYPTO, `the encryption key decrypts none of the tokens in ${serverOf(url)}: wrong ${cfg.encryptionKey !== undefined ? 'BOTFLEET_ENCRYPTION_KEY' : p.keyFile}?`);
    return store;
  } catch (err) {
    await store.close();
    throw err;
  }
}

/**
 * Open the store the configuration names (PostgreSQL at `DATABASE_URL`, else SQLite in the home).
 * @throws BotfleetError `BF_ERR_STORE` (database unreachable, migration failed), `BF_ERR_KEY_MISSING`, `BF_ERR_CRYPTO`
 */
export async function openStore(cfg: Config, o: OpenStoreOptions = {}): Promise<Store> {
  const p = homePaths(cfg.home);
  if (cfg.databaseUrl) return openPgWithKey(cfg, cfg.databaseUrl, o);
  return openSqliteStore(openHomeRegistry(p, cfg.encryptionKey), { journalFile: p.journal });
}

/** Driver codes and SQLSTATEs of a server that is not there yet or went away (worth waiting for), as opposed to a refusal (bad password, no such database). */
const TRANSIENT_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ENOTFOUND', 'EPIPE', '57P01', '57P02', '57P03', '53300']);

/** Whether `err` (a store error, its causes) says the database cannot be reached now, rather than that it refuses us. */
export function isUnreachable(err: unknown): boolean {
  for (let e = err as { code?: unknown; message?: unknown; cause?: unknown } | undefined, depth = 0; e && depth < 5; e = e.cause as typeof e, depth++) {
    const code = typeof e.code === 'string' ? e.code : '';
    if (TRANSIENT_CODES.has(code) || code.startsWith('08')) return true;
    if (/timeout exceeded when trying to connect|Connection terminated|connect ETIMEDOUT|the database system is (starting|shutting) up/i.test(String(e.message ?? ''))) return true;
  }
  return false;
}

/** First wait before trying the database again at start, ms; doubling to {@link WAIT_MAX_MS}. */
export const WAIT_MIN_MS = 500;
/** Longest wait between tries at start, ms. */
export const WAIT_MAX_MS = 15_000;

/**
 * The master's open: while the database cannot be reached, log one line per try saying
 * why and when the next is, tell `onWaiting` (for `/health`), and try again with backoff;
 * any other failure (a refused password, a wrong key) is thrown at once.
 * @throws BotfleetError as {@link openStore}, except for an unreachable database
 */
export async function openStoreWaiting(cfg: Config, logger: Logger, onWaiting: (reason: string | null) => void, o: OpenStoreOptions = {}): Promise<Store> {
  for (let waitMs = WAIT_MIN_MS; ; waitMs = Math.min(waitMs * 2, WAIT_MAX_MS)) {
    try {
      const store = await openStore(cfg, { logger, ...o });
      onWaiting(null);
      return store;
    } catch (err) {
      if (!(err instanceof BotfleetError) || err.code !== ErrorCodes.STORE || !isUnreachable(err)) throw err;
      const reason = `waiting for the store: ${errorMessage(err)}`;
      onWaiting(reason);
      logger.warn({ retryInMs: waitMs }, `${reason}; trying again in ${Math.round(waitMs / 100) / 10} s`);
      await sleep(waitMs);
    }
  }
}

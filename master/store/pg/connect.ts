/**
 * The PostgreSQL engine's connections (node-postgres): one bounded `Pool` with a
 * connect timeout and per-statement timeouts, so a slow or dead server makes a call
 * fail in bounded time instead of hanging the master. The URL's password is never
 * shown: errors and logs carry {@link redactUrl}'s form. An idle connection that breaks
 * is reported by the pool's `error` event, handled here: without a listener
 * node-postgres would throw it into the process (the master must never be what dies).
 */
import pg from 'pg';
import type { Logger } from 'pino';
import { BotfleetError, ErrorCodes, fail } from '../../../common/errors.js';

/** Pool bounds and timeouts (ms). */
export interface PgOptions {
  /** `postgres://user:password@host:port/database` (the password is never logged). */
  url: string;
  /** Connections at most (node-postgres `max`). Default 8. */
  poolSize?: number;
  /** A connection must be had within this (`connectionTimeoutMillis`). Default 5000. */
  connectTimeoutMs?: number;
  /** Each statement is ended by the server after this (`statement_timeout`) and given up by the client a little later (`query_timeout`). Default 10000. */
  statementTimeoutMs?: number;
  /** The cluster's statements (leases, owners) are given up after this (the renew deadline: a renewal later than that is of no use). Default: as `statementTimeoutMs`. */
  clusterTimeoutMs?: number;
  logger?: Logger;
}

/** The URL with its password replaced by `***` (for logs, status and errors). Not a URL: `(unparsable DATABASE_URL)`. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparsable DATABASE_URL)';
  }
}

/** Where the URL points, for messages: `user@host:port/database`. */
export function serverOf(url: string): string {
  try {
    const u = new URL(url);
    return `${decodeURIComponent(u.username)}@${u.hostname}:${u.port || '5432'}${u.pathname}`;
  } catch {
    return '(unparsable DATABASE_URL)';
  }
}

/**
 * Check `url` is a PostgreSQL URL. @throws BotfleetError `BF_ERR_CONFIG` naming what is
 * wrong (never the password)
 */
export function checkPgUrl(url: string): void {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw fail(ErrorCodes.CONFIG, 'DATABASE_URL is not a URL (expected postgres://user:password@host:port/database)');
  }
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') throw fail(ErrorCodes.CONFIG, `DATABASE_URL must start with postgres:// (got ${u.protocol}//)`);
  if (!u.hostname) throw fail(ErrorCodes.CONFIG, 'DATABASE_URL names no host');
}

/** A store error from a driver error: what failed and on which server, never the password. */
export function storeError(err: unknown, what: string, url: string): BotfleetError {
  if (err instanceof BotfleetError) return err;
  const e = err as { message?: string; code?: string };
  const detail = String(e.message ?? err).split('\n')[0]!.split(url).join(redactUrl(url)).slice(0, 300);
  return fail(ErrorCodes.STORE, `${what} failed on ${serverOf(url)}: ${detail}${e.code ? ` (${e.code})` : ''}`, err);
}

/** Run `fn`; a failure becomes {@link storeError} (a BotfleetError, already one of ours, passes through). */
export async function storeCall<T>(url: string, what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw storeError(err, what, url);
  }
}

/** Open a pool for `o.url`; it connects lazily, on the first query. */
export function openPool(o: PgOptions): pg.Pool {
  checkPgUrl(o.url);
  const statementTimeoutMs = o.statementTimeoutMs ?? 10_000;
  const pool = new pg.Pool({
    connectionString: o.url,
    max: o.poolSize ?? 8,
    connectionTimeoutMillis: o.connectTimeoutMs ?? 5000,
    idleTimeoutMillis: 30_000,
    statement_timeout: statementTimeoutMs,
    query_timeout: statementTimeoutMs + 1000,
    application_name: 'botfleet',
    // bigint (int8) columns are ms times and ids, all below 2^53: numbers, as the SQLite engine gives them.
    types: { getTypeParser: ((oid: number, format?: 'text' | 'binary') => (oid === 20 ? Number : pg.types.getTypeParser(oid, format))) as typeof pg.types.getTypeParser },
  });
  pool.on('error', (err) => o.logger?.warn({ err: storeError(err, 'an idle connection', o.url).message }, 'store connection lost'));
  return pool;
}

/**
 * Run `fn` in one transaction on one connection: committed when it resolves, rolled back when
 * it throws. A checked-out client has no listener of the pool's: a server that goes away
 * makes it emit `error` (node-postgres), which would end the process, so one is held here
 * (the statement in flight rejects with the same error) and the broken connection is
 * destroyed, not returned to the pool.
 */
export async function inTransaction<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const c = await pool.connect();
  let broken: Error | undefined;
  const onError = (err: Error) => void (broken = err);
  c.on('error', onError);
  try {
    await c.query('BEGIN');
    const out = await fn(c);
    await c.query('COMMIT');
    return out;
  } catch (err) {
    // A statement given up by the client (`query_timeout`) leaves the connection unusable (node-postgres): destroyed, not rolled back on.
    if (!broken && (err as Error).message === 'Query read timeout') broken = err as Error;
    if (!broken) await c.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    c.off('error', onError);
    c.release(broken);
  }
}

/**
 * A dedicated PostgreSQL connection for LISTEN (node-postgres `Client`, never one of the
 * pool's: a pooled connection may be handed to another query). Wake-ups by NOTIFY are
 * backed by polling (River's and Oban's practice), so a notification lost while the
 * connection was down costs only latency: on every (re)connection `onConnected` runs, and
 * the caller looks for what it may have missed. The connection is re-made with jittered
 * exponential backoff (from `minRetryMs`, doubling, at most `maxRetryMs`) whenever it
 * fails or ends; no error of it reaches the process.
 */
import pg from 'pg';
import type { Logger } from 'pino';
import { checkPgUrl, storeError } from './connect.js';

/** What a listener needs; times in ms. */
export interface ListenOptions {
  url: string;
  /** Channels to LISTEN to (identifiers: letters, digits, underscores). */
  channels: readonly string[];
  onNotify(channel: string, payload: string): void;
  /** After each successful (re)connection, once its LISTENs are in force. */
  onConnected?(): void;
  /** The connection was lost (with why, password-free); a new one is being made. */
  onLost?(why: string): void;
  logger?: Logger;
  connectTimeoutMs?: number;
  minRetryMs?: number;
  maxRetryMs?: number;
}

/** A running listener. */
export interface PgListener {
  /** Whether its connection is up with every LISTEN in force. */
  connected(): boolean;
  /** End it (no reconnection after). */
  close(): Promise<void>;
}

const CHANNEL = /^[a-z_][a-z0-9_]*$/;

/** Start listening. @throws BotfleetError `BF_ERR_CONFIG` for a bad URL; a bad channel name throws Error */
export function listenPg(o: ListenOptions): PgListener {
  checkPgUrl(o.url);
  for (const ch of o.channels) if (!CHANNEL.test(ch)) throw new Error(`not a channel name: ${ch}`);
  const min = o.minRetryMs ?? 200;
  const max = o.maxRetryMs ?? 5000;
  let client: pg.Client | null = null;
  let up = false;
  let closed = false;
  let failures = 0;
  let timer: NodeJS.Timeout | null = null;

  const retry = (why: string) => {
    up = false;
    const c = client;
    client = null;
    c?.removeAllListeners('notification');
    void c?.end().catch(() => undefined);
    if (closed || timer) return;
    o.onLost?.(why);
    const delay = Math.min(max, min * 2 ** Math.min(failures++, 16)) * (0.5 + Math.random() / 2);
    timer = setTimeout(() => {
      timer = null;
      void connect();
    }, delay);
    timer.unref();
  };

  const connect = async () => {
    if (closed) return;
    const c = new pg.Client({ connectionString: o.url, connectionTimeoutMillis: o.connectTimeoutMs ?? 5000, keepAlive: true, application_name: 'botfleet-listen' });
    client = c;
    c.on('error', (err) => retry(storeError(err, 'the LISTEN connection', o.url).message));
    c.on('end', () => client === c && retry('the LISTEN connection ended'));
    c.on('notification', (n) => n.payload !== undefined && o.onNotify(n.channel, n.payload));
    try {
      await c.connect();
      for (const ch of o.channels) await c.query(`LISTEN ${ch}`);
      if (client !== c || closed) return void c.end().catch(() => undefined);
      up = true;
      failures = 0;
      o.onConnected?.();
    } catch (err) {
      if (client === c) retry(storeError(err, 'the LISTEN connection', o.url).message);
    }
  };

  void connect();
  return {
    connected: () => up,
    async close() {
      closed = true;
      if (timer) clearTimeout(timer);
      timer = null;
      up = false;
      const c = client;
      client = null;
      await c?.end().catch(() => undefined);
    },
  };
}

/**
 * A dedicated PostgreSQL connection for LISTEN (node-postgres `Client`, never one of the
 * pool's: a pooled connection may be handed to another query). Wake-ups by NOTIFY are
 * backed by polling (River's and Oban's practice), so a notification lost while the
 * connection was down costs only latency: on every (re)connection `onConnected` runs, and
 * the caller looks for what it may have missed. The connection is re-made with jittered
 * exponential backoff (from `minRetryMs`, doubling, at most `maxRetryMs`) whenever it
 * fails or ends, or does not answer a `SELECT 1` within `pingMs` (asked every `pingMs`: a
 * connection blackholed by the network, no FIN and no RST, would otherwise stay silent
 * for TCP keepalive's two hours); no error of it reaches the process.
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
  /** Liveness: a ping every this, which must be answered within it. Default 5000. */
  pingMs?: number;
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
  const l = new Listener(o);
  void l.connect();
  return { connected: () => l.up, close: () => l.close() };
}

/** One listener's connection and its re-connections. */
class Listener {
  up = false;
  private client: pg.Client | null = null;
  private closed = false;
  private failures = 0;
  private timer: NodeJS.Timeout | null = null;
  private ping: NodeJS.Timeout | null = null;

  constructor(private readonly o: ListenOptions) {}

  /** Ask `c` for `SELECT 1` every pingMs; no answer within pingMs drops it. */
  private keepPinging(c: pg.Client): void {
    const every = this.o.pingMs ?? 5000;
    this.ping = setInterval(() => {
      if (this.client !== c) return;
      const late = setTimeout(() => this.client === c && this.retry('the LISTEN connection did not answer a ping'), every);
      late.unref();
      c.query('SELECT 1').then(() => clearTimeout(late), () => clearTimeout(late)); // a failed query ends in 'error' or 'end' too
    }, every);
    this.ping.unref();
  }

  /** Drop the connection and make a new one after the backoff. */
  private retry(why: string): void {
    this.up = false;
    if (this.ping) clearInterval(this.ping);
    this.ping = null;
    const c = this.client;
    this.client = null;
    c?.removeAllListeners('notification');
    void c?.end().catch(() => undefined);
    if (this.closed || this.timer) return;
    this.o.onLost?.(why);
    const min = this.o.minRetryMs ?? 200;
    const delay = Math.min(this.o.maxRetryMs ?? 5000, min * 2 ** Math.min(this.failures++, 16)) * (0.5 + Math.random() / 2);
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.connect();
    }, delay);
    this.timer.unref();
  }

  async connect(): Promise<void> {
    const { o } = this;
    if (this.closed) return;
    const c = new pg.Client({ connectionString: o.url, connectionTimeoutMillis: o.connectTimeoutMs ?? 5000, keepAlive: true, application_name: 'botfleet-listen' });
    this.client = c;
    c.on('error', (err) => this.retry(storeError(err, 'the LISTEN connection', o.url).message));
    c.on('end', () => this.client === c && this.retry('the LISTEN connection ended'));
    c.on('notification', (n) => n.payload !== undefined && o.onNotify(n.channel, n.payload));
    try {
      await c.connect();
      for (const ch of o.channels) await c.query(`LISTEN ${ch}`);
      if (this.client !== c || this.closed) return void c.end().catch(() => undefined);
      this.up = true;
      this.failures = 0;
      this.keepPinging(c);
      o.onConnected?.();
    } catch (err) {
      if (this.client === c) this.retry(storeError(err, 'the LISTEN connection', o.url).message);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.ping) clearInterval(this.ping);
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.up = false;
    const c = this.client;
    this.client = null;
    await c?.end().catch(() => undefined);
  }
}

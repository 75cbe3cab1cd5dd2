/**
 * The status server (default 127.0.0.1:3001), read-only unless STATUS_ACTIONS:
 * `GET /` the live status page and its feeds (status-page.ts), `GET /api/workers/status` (DESIGN.md's shape), `GET /metrics` (Prometheus text),
 * `GET /webhook/stats` (per-bot webhook and journal counters)
 * and `GET /health` (200 when master, registry and, in webhook mode, the webhook
 * server are up; 503 with the reason otherwise). No token or secret ever appears.
 * Every route but `/health` needs STATUS_AUTH or the generated token (config/secrets.ts),
 * and a loopback-bound server answers only to a loopback `Host`.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRouter } from './http-routes.js';
import type { FleetStatus } from './fleet-status.js';
import { authorized, isLoopbackHost, type StatusAuth } from '../../common/status-auth.js';
import { registerStatusPage, type StatusPage, type StatusPageOptions } from './status-page.js';

/**
 * Headers on every answer: a strict Content-Security-Policy (no inline script or style,
 * nothing from another origin, no framing), no MIME sniffing, no Referer leaving the page.
 */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
};

export { fleetStatus, type FleetStatus } from './fleet-status.js';

export interface StatusServerOptions {
  status(): FleetStatus;
  /** The Prometheus text and its content type (metrics.ts's scrape); `release` takes back a body once its response ended. */
  metrics: { contentType: string; metrics(): Promise<string | Buffer>; release?(body: string | Buffer): void };
  /** null when healthy, else the reason (one line). */
  unhealthy(): string | null;
  /** `/api/cluster/status`: the members and who owns which bot (null: not a cluster, the store is SQLite). */
  cluster?: (() => Promise<unknown>) | null;
  /** Per-bot webhook and journal counters for `GET /webhook/stats` (kept off the public webhook port). */
  webhookStats?(): unknown;
  /** STATUS_AUTH (or the generated token): required on every route but `/health`. */
  auth?: StatusAuth;
  /** Bound to loopback: a request whose `Host` is not a loopback name is refused (DNS rebinding). */
  loopbackOnly?: boolean;
  /** The live page (status-page.ts); without it only the APIs are served. */
  page?: Omit<StatusPageOptions, 'headers' | 'status'>;
}

/** The status server: node:http and {@link createRouter}. `listen` resolves with its `http://host:port` address. */
export interface StatusServer {
  /** The page, when asked for; its stream must be closed before the server. */
  page: StatusPage | null;
  server: http.Server;
  /** @returns the address, `http://host:port` (IPv6 in brackets); rejects when the port cannot be bound */
  listen(o: { host: string; port: number }): Promise<string>;
  /** Stop taking requests (new ones get 503), end idle connections, resolve once all are closed. */
  close(): Promise<void>;
}

/**
 * Whether a `Host` header names this machine's loopback (127.0.0.0/8, [::1], localhost,
 * with or without a port). A page on another origin that rebinds its name to 127.0.0.1
 * sends its own name here, and is refused.
 */
export function loopbackHostHeader(host: string | undefined): boolean {
  if (typeof host !== 'string' || host.length > 300) return false;
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:]+)(?::\d{1,5})?$/.exec(host.trim());
  return m !== null && isLoopbackHost(m[1]!.toLowerCase());
}

/** The status server and, when asked for, its page. */
export function createStatusServer(o: StatusServerOptions): StatusServer {
  const router = createRouter((req, res) => {
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
    if (o.loopbackOnly && !loopbackHostHeader(req.headers.host)) return { status: 421, body: { error: 'this server answers only to a loopback host name' } };
    if (!o.auth || req.url === '/health' || authorized(req.headers.authorization, o.auth)) return null;
    // Basic, so a browser asks for it; a bearer token is taken too (status-auth.ts).
    return { status: 401, headers: { 'www-authenticate': 'Basic realm="botfleet", charset="UTF-8"' }, body: { error: 'authentication required (STATUS_AUTH)' } };
  });
  router.get('/api/workers/status', () => ({ body: o.status() }));
  router.get('/metrics', async () => {
    const body = await o.metrics.metrics();
    return { type: o.metrics.contentType, body, done: () => o.metrics.release?.(body) };
  });
  router.get('/webhook/stats', () => ({ body: o.webhookStats?.() ?? {} }));
  router.get('/api/cluster/status', async () => ({ body: o.cluster ? await o.cluster() : { cluster: false, why: 'the store is SQLite in the home: this master owns every bot' } }));
  router.get('/health', () => {
    const why = o.unhealthy();
    return why === null ? { body: { ok: true } } : { status: 503, body: { ok: false, reason: why } };
  });
  const page = o.page ? registerStatusPage(router, { ...o.page, status: o.status, headers: { ...SECURITY_HEADERS } }) : null;
  const server = http.createServer(router.listener);
  return {
    page, server,
    listen: ({ host, port }) => new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        const a = server.address() as AddressInfo;
        resolve(`http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`);
      });
    }),
    close: () => new Promise((resolve) => {
      router.closing();
      if (!server.listening) return resolve();
      server.close(() => resolve());
      server.closeIdleConnections();
    }),
  };
}

/**
 * The shared webhook server (fastify, inside the master): `POST /webhook/:botId`
 * for every webhook-mode bot. The bot id, never the token, is in the URL.
 * Order of checks: source address (when an allowlist is set) 403, unknown bot 404,
 * wrong or missing secret 401 (all before the body is read), body not JSON or not
 * an Update 400, over the limit 413. A valid update goes to the delivery port (the
 * master's journal) and is answered 200 once it is committed there; 503 with
 * Retry-After when it cannot be (journal full for that bot, or a write failed), so
 * Telegram keeps it and retries. While the master drains, the server keeps
 * listening and answers every new webhook call 503 with `Connection: close`
 * (fastify's drain practice), so intake stops visibly instead of as refused
 * connections. Slow clients are bounded by header, request and idle timeouts and a
 * connection cap.
 */
import http from 'node:http';
import net from 'node:net';
import https from 'node:https';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { NO_SCHEMAS } from '../common/fastify-schemas.js';
import type { Update } from 'node-telegram-bot-api';
import { updateProblem } from '../worker/protocol.js';
import { assertNever } from '../common/errors.js';
import { secretMatches } from './secret.js';
import { sourceAllowlist } from '../common/source-allowlist.js';

/**
 * The delivery port's answer for one update: `journaled` (committed) and `duplicate`
 * (already journaled or handled) are answered 200; `full` (the bot's journal bound)
 * and `failed` (the write failed) 503 with Retry-After; `unknown-bot` 404.
 */
export type DeliverResult = 'journaled' | 'duplicate' | 'full' | 'failed' | 'unknown-bot';

/** The delivery port this server needs; the master's delivery wing implements it. */
export interface WebhookTarget {
  isWebhookBot(botId: string): boolean;
  /** `raw`: the body as received (the journal stores it as is instead of serializing the update again). */
  deliver(botId: string, update: Update, raw: string): Promise<DeliverResult>;
}

/** Per-bot counters of this server (since start), served by the status server's `/webhook/stats`. */
export interface WebhookStats { requests: number; accepted: number; duplicates: number; rejected: number; unavailable: number }

/** Timeouts (ms) and caps for the public port; defaults are below Telegram's own ~60 s wait. */
export interface Ingress {
  headersTimeoutMs: number; requestTimeoutMs: number; idleTimeoutMs: number; maxConnections: number;
  /** Open connections one source address may hold (a trusted proxy is not limited); 0: no limit. */
  maxConnectionsPerSource: number;
  /** A new connection that sends no byte within this is closed (ms). */
  firstByteTimeoutMs: number;
}
export const INGRESS_DEFAULTS: Readonly<Ingress> = { headersTimeoutMs: 10_000, requestTimeoutMs: 15_000, idleTimeoutMs: 60_000, maxConnections: 1024, maxConnectionsPerSource: 512, firstByteTimeoutMs: 5_000 };

export interface WebhookServerOptions {
  target: WebhookTarget;
  secretTokenFor(botId: string): string;
  /** Largest accepted body in bytes (413 above). Default 1 MiB. */
  bodyLimit?: number;
  https?: { key: Buffer; cert: Buffer };
  /** True once the master is shutting down: intake off, every new call gets 503 (Telegram retries later). */
  draining?(): boolean;
  /**
   * Source addresses allowed to post (CIDR list, e.g. Telegram's 149.154.160.0/20 and
   * 91.108.4.0/22 from https://core.telegram.org/bots/webhooks). Empty or absent: any.
   */
  allowedSources?: string[];
  /** Trust `X-Forwarded-For` from these proxy addresses (fastify's `trustProxy`), so the allowlist sees the client. */
  trustProxy?: string[];
  ingress?: Partial<Ingress>;
  /** Told of every answer on the webhook route (for /metrics): the bot when it is a webhook bot (null otherwise), the status, seconds since the request arrived. */
  onResponse?(botId: string | null, code: number, seconds: number): void;
}

/** The server and its counters. */
export type WebhookServer = FastifyInstance & { webhookStats(): Record<string, WebhookStats> };

const NOT_JSON = Symbol('not-json');

/** Build the fastify app (not listening yet: call `listen`, or `inject` in tests). */
export function createWebhookServer(o: WebhookServerOptions): WebhookServer {
  const app = buildApp(o, { ...INGRESS_DEFAULTS, ...o.ingress });
  const rawBodies = parseBodiesAsJson(app);
  const stats = new Map<string, WebhookStats>();
  const statsOf = (id: string) => {
    let s = stats.get(id);
    if (!s) stats.set(id, (s = { requests: 0, accepted: 0, duplicates: 0, rejected: 0, unavailable: 0 }));
    return s;
  };
  app.post<{ Params: { botId: string } }>('/webhook/:botId', { ...answerHook(o), onRequest: edgeChecks(o, statsOf) }, async (req, reply) => {
    const { botId } = req.params;
    const s = statsOf(botId);
    const problem = req.body === NOT_JSON ? 'not JSON' : updateProblem(req.body);
    if (problem !== null) {
      s.rejected++;
      return reply.code(400).send({ ok: false, error: `body is not a Telegram Update: ${problem}` });
    }
    s.requests++;
    const result = await o.target.deliver(botId, req.body as Update, rawBodies.get(req.body as object) ?? JSON.stringify(req.body));
    switch (result) {
      case 'journaled': s.accepted++; return reply.code(200).send({ ok: true });
      case 'duplicate': s.duplicates++; return reply.code(200).send({ ok: true });
      case 'unknown-bot': return reply.code(404).send({ ok: false, error: 'unknown bot' });
      case 'full':
        s.unavailable++;
        return reply.code(503).header('retry-after', '5').send({ ok: false, error: 'journal full for this bot' });
      case 'failed':
        s.unavailable++;
        return reply.code(503).header('retry-after', '1').send({ ok: false, error: 'update could not be journaled' });
      default: return assertNever(result);
    }
  });
  app.get('/health', async () => ({ ok: true }));
  return Object.assign(app, { webhookStats: () => Object.fromEntries(stats) });
}

/** Fastify over our own http(s) server, with the ingress deadlines and bounds. */
function buildApp(o: WebhookServerOptions, ing: Ingress): FastifyInstance {
  // A stalled body must not hold a socket: the whole request has requestTimeoutMs. Node checks
  // these deadlines every `connectionsCheckingInterval` (30 s by default: a stalled body held
  // its socket 55 s when the deadline was 1.5 s, measured), so the server is made here.
  const serverOpts = {
    requestTimeout: ing.requestTimeoutMs, headersTimeout: ing.headersTimeoutMs, keepAliveTimeout: 5_000,
    connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(ing.headersTimeoutMs / 4))),
  };
  const app = Fastify({
    logger: false, schemaController: NO_SCHEMAS, bodyLimit: o.bodyLimit ?? 1024 * 1024, return503OnClosing: true,
    connectionTimeout: ing.idleTimeoutMs,
    ...(o.trustProxy && o.trustProxy.length > 0 ? { trustProxy: o.trustProxy } : {}),
    serverFactory: (handler) => (o.https ? https.createServer({ ...serverOpts, handshakeTimeout: ing.firstByteTimeoutMs, ...o.https }, handler) : http.createServer(serverOpts, handler)),
  }) as unknown as FastifyInstance;
  app.server.maxConnections = ing.maxConnections;
  guardConnections(app.server, o, ing);
  return app;
}

/**
 * Decide at accept, before a connection can hold one of the port's slots: a source outside
 * the allowlist (and not a trusted proxy) is closed at once, one source holds at most
 * `maxConnectionsPerSource`, and a connection silent for `firstByteTimeoutMs` is closed.
 * So no bot on the host and no stranger can take the slots Telegram needs.
 */
export function guardConnections(server: http.Server | https.Server, o: Pick<WebhookServerOptions, 'allowedSources' | 'trustProxy'>, ing: Pick<Ingress, 'maxConnectionsPerSource' | 'firstByteTimeoutMs'>): void {
  const allowed = sourceAllowlist(o.allowedSources ?? []);
  const proxy = sourceAllowlist(o.trustProxy ?? []);
  const open = new Map<string, number>();
  server.on('connection', (socket: net.Socket) => {
    const from = socket.remoteAddress ?? '';
    const viaProxy = proxy !== null && proxy(from);
    if (allowed && !viaProxy && !allowed(from)) return void socket.destroy();
    if (!viaProxy && ing.maxConnectionsPerSource > 0) {
      const n = (open.get(from) ?? 0) + 1;
      if (n > ing.maxConnectionsPerSource) return void socket.destroy();
      open.set(from, n);
      socket.once('close', () => {
        const left = (open.get(from) ?? 1) - 1;
        if (left <= 0) open.delete(from);
        else open.set(from, left);
      });
    }
    // Over TLS the raw socket emits no 'data' (TLS reads its handle): the handshake timeout bounds it instead.
    if (server instanceof https.Server) return;
    const silent = setTimeout(() => socket.destroy(), ing.firstByteTimeoutMs);
    silent.unref();
    socket.once('data', () => clearTimeout(silent));
    socket.once('close', () => clearTimeout(silent));
  });
}

/** Every body is parsed as JSON (Telegram sends no other), never rejected here: NOT_JSON is answered 400 by the route. @returns each parsed body's raw text (it is journaled as received) */
function parseBodiesAsJson(app: FastifyInstance): WeakMap<object, string> {
  app.removeAllContentTypeParsers();
  const rawBodies = new WeakMap<object, string>();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_req, body, done) => {
    try {
      const parsed = JSON.parse(body as string) as unknown;
      if (typeof parsed === 'object' && parsed !== null) rawBodies.set(parsed, body as string);
      done(null, parsed);
    } catch {
      done(null, NOT_JSON);
    }
  });
  return rawBodies;
}

type WebhookRequest = FastifyRequest<{ Params: { botId: string } }>;

/** The route's onResponse hook for /metrics, when asked for. */
function answerHook(o: WebhookServerOptions): { onResponse?: (req: WebhookRequest, reply: FastifyReply, done: () => void) => void } {
  const onResponse = o.onResponse;
  if (!onResponse) return {};
  return {
    onResponse: (req, reply, done) => {
      const { botId } = req.params;
      onResponse(o.target.isWebhookBot(botId) ? botId : null, reply.statusCode, reply.elapsedTime / 1000);
      done();
    },
  };
}

/** Checks before the body is read: draining (503), source allowlist (403), unknown bot (404), secret_token (401). */
function edgeChecks(o: WebhookServerOptions, statsOf: (id: string) => WebhookStats) {
  const allowed = sourceAllowlist(o.allowedSources ?? []);
  // The expected secret_token per bot, computed once (an HMAC per request would be paid on the hot path).
  const expected = new Map<string, Buffer>();
  const expectedFor = (botId: string) => {
    let b = expected.get(botId);
    if (!b) expected.set(botId, (b = Buffer.from(o.secretTokenFor(botId))));
    return b;
  };
  return async (req: WebhookRequest, reply: FastifyReply) => {
    if (o.draining?.()) return reply.code(503).header('connection', 'close').header('retry-after', '5').send({ ok: false, error: 'shutting down' });
    if (allowed && !allowed(req.ip)) return reply.code(403).send({ ok: false, error: 'source address not allowed' });
    const { botId } = req.params;
    if (!o.target.isWebhookBot(botId)) return reply.code(404).send({ ok: false, error: 'unknown bot' });
    const given = req.headers['x-telegram-bot-api-secret-token'];
    if (!secretMatches(typeof given === 'string' ? given : undefined, expectedFor(botId))) {
      statsOf(botId).rejected++;
      return reply.code(401).send({ ok: false, error: 'wrong secret token' });
    }
  };
}

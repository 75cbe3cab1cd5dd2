/**
 * The shared webhook server (fastify, inside the master): `POST /webhook/:botId`
 * for every webhook-mode bot. The bot id, never the token, is in the URL.
 * Order of checks: unknown bot 404, wrong or missing secret 401 (both before the
 * body is read), body not JSON or not an Update 400, over the limit 413. A valid
 * update goes to the bot's worker over IPC and is answered 200 after the
 * worker's ack; 503 when the worker is not running or does not ack in time, so
 * Telegram redelivers it. While the master drains, the server keeps listening and
 * answers every new webhook call 503 with `Connection: close` (fastify's drain
 * practice), so intake stops visibly instead of as refused connections.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import { NO_SCHEMAS } from '../common/fastify-schemas.js';
import type { Update } from 'node-telegram-bot-api';
import { updateProblem } from '../worker/protocol.js';
import { secretMatches } from './secret.js';

/**
 * The result of handing one update on (the delivery port's answer): `acked` and
 * `failed` (the handler threw) and `dead-lettered` are answered 200, `unknown-bot`
 * 404, `unavailable` and `timeout` 503 with Retry-After.
 */
export type DeliverResult = 'acked' | 'failed' | 'dead-lettered' | 'unknown-bot' | 'unavailable' | 'timeout';

/** The delivery port this server needs; the master's delivery wing implements it. */
export interface WebhookTarget {
  isWebhookBot(botId: string): boolean;
  deliver(botId: string, update: Update): Promise<DeliverResult>;
}

/** Per-bot counters for `GET /webhook/stats`. */
export interface WebhookStats { received: number; delivered: number; failed: number; rejected: number; inFlight: number }

export interface WebhookServerOptions {
  target: WebhookTarget;
  secretTokenFor(botId: string): string;
  /** Largest accepted body in bytes (413 above). Default 1 MiB. */
  bodyLimit?: number;
  https?: { key: Buffer; cert: Buffer };
  /** True once the master is shutting down: intake off, every new call gets 503 (Telegram retries later). */
  draining?(): boolean;
}

const NOT_JSON = Symbol('not-json');

/** Build the fastify app (not listening yet: call `listen`, or `inject` in tests). */
export function createWebhookServer(o: WebhookServerOptions): FastifyInstance {
  const app = Fastify({ logger: false, schemaController: NO_SCHEMAS, bodyLimit: o.bodyLimit ?? 1024 * 1024, return503OnClosing: true, ...(o.https ? { https: o.https } : {}) }) as unknown as FastifyInstance;
  const stats = new Map<string, WebhookStats>();
  // The expected secret_token per bot, computed once (an HMAC per request would be paid on the hot path).
  const expected = new Map<string, Buffer>();
  const expectedFor = (botId: string) => {
    let b = expected.get(botId);
    if (!b) expected.set(botId, (b = Buffer.from(o.secretTokenFor(botId))));
    return b;
  };
  const statsOf = (id: string) => {
    let s = stats.get(id);
    if (!s) stats.set(id, (s = { received: 0, delivered: 0, failed: 0, rejected: 0, inFlight: 0 }));
    return s;
  };

  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_req, body, done) => {
    try {
      done(null, JSON.parse(body as string));
    } catch {
      done(null, NOT_JSON);
    }
  });

  app.post<{ Params: { botId: string } }>('/webhook/:botId', {
    onRequest: async (req, reply) => {
      if (o.draining?.()) return reply.code(503).header('connection', 'close').header('retry-after', '5').send({ ok: false, error: 'shutting down' });
      const { botId } = req.params;
      if (!o.target.isWebhookBot(botId)) return reply.code(404).send({ ok: false, error: 'unknown bot' });
      const given = req.headers['x-telegram-bot-api-secret-token'];
      if (!secretMatches(typeof given === 'string' ? given : undefined, expectedFor(botId))) {
        statsOf(botId).rejected++;
        return reply.code(401).send({ ok: false, error: 'wrong secret token' });
      }
    },
  }, async (req, reply) => {
    const { botId } = req.params;
    const s = statsOf(botId);
    const problem = req.body === NOT_JSON ? 'not JSON' : updateProblem(req.body);
    if (problem !== null) {
      s.rejected++;
      return reply.code(400).send({ ok: false, error: `body is not a Telegram Update: ${problem}` });
    }
    s.received++;
    s.inFlight++;
    const result = await o.target.deliver(botId, req.body as Update);
    s.inFlight--;
    switch (result) {
      case 'acked': s.delivered++; return reply.code(200).send({ ok: true });
      // The handler failed: 200 all the same, or Telegram would redeliver a poison update forever.
      case 'failed': s.failed++; return reply.code(200).send({ ok: true });
      // In flight through repeated worker deaths: taken off Telegram's queue, logged by the supervisor.
      case 'dead-lettered': s.failed++; return reply.code(200).send({ ok: true });
      case 'unknown-bot': return reply.code(404).send({ ok: false, error: 'unknown bot' });
      case 'unavailable':
      case 'timeout': return reply.code(503).header('retry-after', '1').send({ ok: false, error: `worker ${result}` });
    }
  });

  app.get('/health', async () => ({ ok: true }));
  app.get('/webhook/stats', async () => Object.fromEntries(stats));
  return app;
}

/**
 * The status server's router, on node:http. Hand-written where fastify was used
 * before, for one measured reason: importing fastify costs the master ~13 MB of RSS
 * (its schema compilers, ajv and fast-json-stringify, load with it even when no route
 * has a schema: 43 -> 59 MB for a bare Node process, `import('fastify')` alone), and
 * the master's RSS must stay below PM2's daemon (bench measure 7). The status server
 * has eight routes, no bodies and no schemas; the webhook server, where throughput
 * counts, keeps fastify and is loaded only when a bot may use webhooks.
 *
 * Rules kept from fastify's behaviour: a GET route answers HEAD too (fastify's
 * `exposeHeadRoutes`); the query string is not part of the path; `:name` segments are
 * URL-decoded; an unknown route is a 404 JSON body; a handler that throws is a 500
 * with its one-line message; while closing, new requests get 503 (`return503OnClosing`).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { errorMessage } from '../../common/errors.js';

/** A route's answer: `body` an object (sent as JSON), a string or bytes with `type`; `done` runs once the response ended or its connection closed (the body is no longer read). */
export interface Answer { status?: number; type?: string; headers?: Record<string, string>; body: unknown; done?: () => void }

/**
 * A route: `params` holds the decoded `:name` segments. Returns the answer, or
 * undefined when it has written `res` itself (the event stream).
 */
export type Handler = (req: IncomingMessage, res: ServerResponse, params: Record<string, string>) => Answer | undefined | Promise<Answer | undefined>;

/** Where routes are added (the status server and its page). */
export interface Routes {
  get(path: string, h: Handler): void;
  post(path: string, h: Handler): void;
}

interface Route { method: string; segments: string[]; h: Handler }

/** Longest path matched, bytes: longer ones are a 414 (Node's own header limit is 16 KiB). */
const MAX_PATH = 2048;

/** Split a request target into its path segments; null when it is not an origin-form path. */
function pathSegments(url: string | undefined): string[] | null {
  if (!url || url[0] !== '/' || url.startsWith('//')) return null;
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  return path === '/' ? [''] : path.slice(1).split('/');
}

/** Match `segments` against a route's pattern. @returns the decoded params, or null (no match, or a bad %-escape) */
function match(pattern: string[], segments: string[]): Record<string, string> | null {
  if (pattern.length !== segments.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i]!;
    const s = segments[i]!;
    if (p.startsWith(':')) {
      try {
        params[p.slice(1)] = decodeURIComponent(s);
      } catch {
        return null;
      }
    } else if (p !== s) return null;
  }
  return params;
}

/** Write an answer: objects as JSON, HEAD without the body. */
function send(req: IncomingMessage, res: ServerResponse, a: Answer): void {
  const json = !(typeof a.body === 'string' || Buffer.isBuffer(a.body));
  const body = json ? JSON.stringify(a.body ?? null) : (a.body as string | Buffer);
  res.writeHead(a.status ?? 200, {
    ...a.headers,
    'content-type': a.type ?? (json ? 'application/json; charset=utf-8' : 'text/plain; charset=utf-8'),
    'content-length': String(Buffer.byteLength(body)),
  });
  if (a.done) res.once('close', a.done);
  res.end(req.method === 'HEAD' ? undefined : body);
}

/**
 * A router over `routes`: `guard` runs first on every request (the headers, STATUS_AUTH)
 * and answers instead when it returns an answer. @returns the request listener and
 * `closing()` to turn new requests into 503
 */
export function createRouter(guard: (req: IncomingMessage, res: ServerResponse) => Answer | null): Routes & { listener(req: IncomingMessage, res: ServerResponse): void; closing(): void } {
  const routes: Route[] = [];
  let closed = false;
  const add = (method: string) => (path: string, h: Handler) => void routes.push({ method, segments: pathSegments(path)!, h });
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    req.resume(); // no route reads a body
    const early = closed ? { status: 503, headers: { connection: 'close' }, body: { error: 'the master is stopping' } } : guard(req, res);
    if (early) return send(req, res, early);
    if ((req.url?.length ?? 0) > MAX_PATH) return send(req, res, { status: 414, body: { error: 'request target too long' } });
    const segments = pathSegments(req.url);
    const method = req.method === 'HEAD' ? 'GET' : req.method;
    for (const r of segments ? routes : []) {
      if (r.method !== method) continue;
      const params = match(r.segments, segments!);
      if (!params) continue;
      const a = await r.h(req, res, params);
      if (a) send(req, res, a);
      return;
    }
    send(req, res, { status: 404, body: { error: `no route ${String(req.method).slice(0, 10)} ${String(req.url).slice(0, 100)}` } });
  };
  return {
    get: add('GET'),
    post: add('POST'),
    closing: () => void (closed = true),
    listener(req, res) {
      handle(req, res).catch((err: unknown) => {
        if (res.headersSent) res.destroy();
        else send(req, res, { status: 500, body: { error: errorMessage(err) } });
      });
    },
  };
}

/**
 * Botfleet's HTTP path to the Bot API, over node:http / node:https with one
 * keep-alive agent per process. Two entry points:
 *
 * - {@link callBotApi}: the calls botfleet itself makes (the master's
 *   setWebhook/deleteWebhook, a worker's getMe, its getUpdates long poll and the
 *   offset confirmation at stop). JSON body, `{ ok, result }` unwrapped
 *   (https://core.telegram.org/bots/api#making-requests).
 * - {@link botApiFetch}: the `fetch` given to node-telegram-bot-api
 *   (`TransportOptions.fetch`) for the calls a handler makes. Plain bodies go the
 *   same way; a streamed multipart upload goes through the global fetch (undici).
 *
 * Why not the library (or node-fetch) for botfleet's own calls: measured per
 * worker, the library's first call costs ~80 ms CPU and ~7.5 MB PSS (its
 * request encoder probes `new Request(...)`, which loads Node's bundled undici;
 * node-fetch's import is ~45 ms and ~4 MB more); this path costs ~10 ms and
 * ~0.2 MB. An idle bot, and the master, never pay the rest.
 */
import type { Agent, IncomingMessage } from 'node:http';
import { BotfleetError, ErrorCodes } from './errors.js';

/** Where a call failed. `errorCode` is Telegram's error_code (an HTTP status), or null when no envelope came back. */
export class BotApiError extends BotfleetError {
  constructor(
    message: string,
    readonly errorCode: number | null,
    /** Worth retrying: no reply, a timeout, 5xx, or 429. */
    readonly transient: boolean,
    /** Telegram's `parameters.retry_after` (seconds), on a 429. */
    readonly retryAfterSec?: number,
    options?: { cause?: unknown },
  ) {
    super(ErrorCodes.TELEGRAM, message, options);
    this.name = 'BotApiError';
  }
}

/** A reply as read off the wire. */
interface RawReply {
  status: number;
  headers: IncomingMessage['headers'];
  text: string;
}

type HttpModule = typeof import('node:http');
const clients = new Map<string, Promise<{ mod: HttpModule; agent: Agent }>>();

/** node:http or node:https with its keep-alive agent, loaded on first use (off a worker's start path). */
function clientFor(protocol: string): Promise<{ mod: HttpModule; agent: Agent }> {
  let c = clients.get(protocol);
  if (!c) {
    const load = protocol === 'https:' ? import('node:https') : import('node:http');
    c = load.then((mod) => ({ mod: mod as unknown as HttpModule, agent: new mod.Agent({ keepAlive: true }) }));
    clients.set(protocol, c);
  }
  return c;
}

/**
 * POST `body` to `url` and read the whole reply.
 * @throws the signal's reason (an AbortError/TimeoutError DOMException) when `signal` aborts; the socket error otherwise
 */
async function post(url: URL, body: string, headers: Record<string, string>, signal?: AbortSignal): Promise<RawReply> {
  const { mod, agent } = await clientFor(url.protocol);
  signal?.throwIfAborted(); // also covers an abort while the module was loading: no request is sent then
  return new Promise<RawReply>((resolve, reject) => {
    const req = mod.request(url, { method: 'POST', agent, headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
      // Cut off mid-body (abort, reset): settle instead of waiting for an 'end' that will not come.
      res.on('close', () => {
        if (!res.complete) reject(signal?.aborted ? (signal.reason as Error) : new Error('connection closed before the reply ended'));
      });
    });
    const onAbort = () => req.destroy(signal!.reason as Error);
    signal?.addEventListener('abort', onAbort, { once: true });
    req.on('close', () => signal?.removeEventListener('abort', onAbort));
    req.on('error', reject);
    req.end(body);
  });
}

/** Options of {@link callBotApi}. */
export interface CallOptions {
  /** Client-side deadline (ms) for the whole call; a long poll needs its server wait plus a margin. */
  timeoutMs: number;
  /** Cancels the call; it then rejects with the signal's reason (not a BotApiError). */
  signal?: AbortSignal;
}

/**
 * Call Bot API `method` of the bot with `token`. The token is in the URL only:
 * never in an error message.
 * @returns the `result` field of Telegram's `{ ok: true, result }` reply
 * @throws BotApiError on `ok: false` (with error_code), on no reply, on a 5xx without an envelope, on a timeout;
 *   the signal's reason when `signal` aborts
 */
export async function callBotApi<T>(apiRoot: string, token: string, method: string, params: object, o: CallOptions): Promise<T> {
  const url = new URL(`${apiRoot.replace(/\/+$/, '')}/bot${token}/${method}`);
  // One signal for the caller's cancel and our deadline (unref'd: a pending call never keeps a process alive).
  const ac = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    ac.abort(new BotApiError(`${method} timed out after ${o.timeoutMs} ms`, null, true));
  }, o.timeoutMs);
  timer.unref();
  const onCancel = () => ac.abort(o.signal!.reason);
  if (o.signal?.aborted) onCancel();
  o.signal?.addEventListener('abort', onCancel, { once: true });
  let reply: RawReply;
  try {
    reply = await post(url, JSON.stringify(params), { 'content-type': 'application/json' }, ac.signal);
  } catch (err) {
    if (o.signal?.aborted || timedOut) throw err;
    throw new BotApiError(`${method} failed: ${(err as Error).message}`, null, true, undefined, { cause: err });
  } finally {
    clearTimeout(timer);
    o.signal?.removeEventListener('abort', onCancel);
  }
  let json: { ok?: boolean; result?: T; error_code?: number; description?: string; parameters?: { retry_after?: number } };
  try {
    json = JSON.parse(reply.text) as typeof json;
  } catch {
    throw new BotApiError(`${method}: HTTP ${reply.status} with a body that is not JSON`, reply.status >= 500 ? null : reply.status, reply.status >= 500);
  }
  if (json.ok === true) return json.result as T;
  const code = json.error_code ?? reply.status;
  throw new BotApiError(`${method}: ${code} ${json.description ?? ''}`.trim(), code, code === 429 || code >= 500, json.parameters?.retry_after);
}

/**
 * A `fetch` for node-telegram-bot-api (same contract as the global fetch). Plain
 * bodies (urlencoded forms, strings: every call without a file) go over
 * node:http; anything else through the global fetch (undici), lazily, only in
 * the bots that upload. The reply is a standard `Response` (the library's
 * request encoder has loaded undici by then, so it costs nothing more).
 */
export const botApiFetch: typeof fetch = async (input, init) => {
  const body = init?.body;
  const plain = body === undefined || body === null || typeof body === 'string' || body instanceof URLSearchParams;
  if (!plain || typeof input !== 'string') return globalThis.fetch(input, init);
  const headers: Record<string, string> = {};
  const given = init?.headers;
  if (given && !(Symbol.iterator in given)) Object.assign(headers, given); // the library passes a plain object
  else new Headers(given).forEach((v, k) => (headers[k] = v));
  const r = await post(new URL(input), body === undefined || body === null ? '' : String(body), headers, init?.signal ?? undefined);
  const out = new Headers();
  for (const [k, v] of Object.entries(r.headers)) if (v !== undefined) out.set(k, Array.isArray(v) ? v.join(', ') : v);
  return new Response(r.text, { status: r.status, headers: out });
};

/**
 * Bot configurations from an HTTP API (BOTS_API_URL): a GET with `If-None-Match`
 * (the stored ETag; RFC 9110 §13.1.2), retried by p-retry, polled every
 * BOTS_API_POLL_MS one fetch at a time. A changed document is applied to the
 * registry (the last good list, tokens encrypted) through {@link BotsApiStore}; a
 * 304 or an unchanged body writes nothing. A failure keeps the last good list in
 * force. The URL may carry a secret (userinfo, a query key): no message names more
 * than its origin.
 */
import pRetry, { AbortError } from 'p-retry';
import { BotfleetError, ErrorCodes, errorMessage } from '../../common/errors.js';
import { BotsApiDocumentError, parseBotsDocument, type ApiBot, type ApiDocument, type ApiSyncResult } from '../../config/bots-api.js';

/** Largest response body read (bytes): a document of MAX_API_ENTRIES bots with their settings fits. */
export const MAX_BODY_BYTES = 16 * 1024 * 1024;
/** Deadline of one attempt (ms), headers and body. */
export const FETCH_TIMEOUT_MS = 10_000;
/** Retries of a transient failure (network, timeout, 5xx, 429) within one poll, with jittered backoff from 500 ms to 5 s. */
export const FETCH_RETRIES = 2;

/** A failed fetch. `transient`: a network error, a timeout, a 5xx or a 429 (retried); else a 4xx or a bad document. */
export class BotsApiError extends BotfleetError {
  constructor(message: string, readonly transient: boolean) {
    super(ErrorCodes.BOTS_API, message);
    this.name = 'BotsApiError';
  }
}

/** The answer of one fetch: unchanged (a 304), or the document and its ETag (null when the API sends none). */
export type BotsApiReply = { unchanged: true } | { unchanged: false; document: ApiDocument; etag: string | null };

/** What a fetch needs. `bearer`: BOTS_API_TOKEN, sent as `Authorization: Bearer`. */
export interface FetchOptions {
  url: string;
  bearer?: string | undefined;
  etag: string | null;
  timeoutMs?: number;
  retries?: number;
  minRetryMs?: number;
}

/** The origin of a URL, for messages: never its userinfo, path or query. */
export const originOf = (url: string): string => {
  try {
    return new URL(url).origin;
  } catch {
    return '(invalid URL)';
  }
};

async function readCapped(res: Response): Promise<string> {
  const declared = Number(res.headers.get('content-length') ?? 0);
  if (declared > MAX_BODY_BYTES) throw new BotsApiError(`the document is ${declared} bytes, more than ${MAX_BODY_BYTES}`, false);
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > MAX_BODY_BYTES) {
      await reader.cancel();
      throw new BotsApiError(`the document is more than ${MAX_BODY_BYTES} bytes`, false);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function attempt(o: FetchOptions): Promise<BotsApiReply> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (o.etag !== null) headers['if-none-match'] = o.etag;
  // fetch refuses a URL with credentials: userinfo becomes Basic authentication (RFC 7617), BOTS_API_TOKEN wins over it.
  const target = new URL(o.url);
  if (target.username !== '' || target.password !== '') {
    headers.authorization = `Basic ${Buffer.from(`${decodeURIComponent(target.username)}:${decodeURIComponent(target.password)}`).toString('base64')}`;
    target.username = '';
    target.password = '';
  }
  if (o.bearer) headers.authorization = `Bearer ${o.bearer}`;
  let res: Response;
  const signal = AbortSignal.timeout(o.timeoutMs ?? FETCH_TIMEOUT_MS);
  try {
    res = await fetch(target, { headers, signal, redirect: 'error' });
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code;
    throw new BotsApiError(signal.aborted ? `no answer within ${o.timeoutMs ?? FETCH_TIMEOUT_MS} ms` : `cannot reach it${cause ? ` (${cause})` : ''}`, true);
  }
  if (res.status === 304) {
    await res.body?.cancel();
    return { unchanged: true };
  }
  if (res.status !== 200) {
    await res.body?.cancel();
    throw new BotsApiError(`answered HTTP ${res.status}`, res.status >= 500 || res.status === 429 || res.status === 408);
  }
  let text: string;
  try {
    text = await readCapped(res);
  } catch (err) {
    if (err instanceof BotsApiError) throw err;
    throw new BotsApiError(signal.aborted ? `the document did not arrive within ${o.timeoutMs ?? FETCH_TIMEOUT_MS} ms` : `the document was cut off: ${errorMessage(err)}`, true);
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new BotsApiError('the document is not JSON', false);
  }
  try {
    return { unchanged: false, document: parseBotsDocument(body), etag: res.headers.get('etag') };
  } catch (err) {
    if (err instanceof BotsApiDocumentError) throw new BotsApiError(err.message, false);
    throw err;
  }
}

/**
 * Fetch the bots document once, retrying a transient failure (p-retry).
 * @throws BotsApiError with a one-line message (prefixed by the API's origin by the caller)
 */
export function fetchBots(o: FetchOptions): Promise<BotsApiReply> {
  return pRetry(async () => {
    try {
      return await attempt(o);
    } catch (err) {
      if (err instanceof BotsApiError && !err.transient) throw new AbortError(err);
      throw err;
    }
  }, { retries: o.retries ?? FETCH_RETRIES, minTimeout: o.minRetryMs ?? 500, maxTimeout: 5000, randomize: true });
}

/** Where a fetched document goes: the store's bots (store.ts `BotRegistry`, either engine). */
export interface BotsApiStore {
  apiEtag(): Promise<string | null>;
  syncFromApi(bots: readonly ApiBot[], etag: string | null): Promise<ApiSyncResult>;
}

/** The outcome of the last poll, for `/metrics`: wall-clock ms of the last success, and whether the last poll succeeded. */
export interface PollOutcome {
  success: boolean;
  lastSuccessMs: number | null;
}

/** What the poller reports; the master turns these into log lines and a reload. */
export interface PollEvents {
  /** The registry changed (rows added, changed or removed): reload the fleet. */
  onApplied(result: ApiSyncResult, rejected: readonly string[]): void;
  onFailure(message: string): void;
  /** A poll succeeded after one or more failed. */
  onRecovered?(): void;
}

/** The running poller. `pollNow` runs one poll (or joins the running one). */
export interface BotsApiPoller {
  pollNow(): Promise<void>;
  outcome(): PollOutcome;
  stop(): void;
}

/**
 * Poll the bots API: one poll at once, the next one `intervalMs` after the previous
 * one ended (a slow API never piles polls up). The first poll starts at once.
 */
export function startBotsApiPoller(o: { url: string; bearer?: string | undefined; intervalMs: number; store: BotsApiStore; events: PollEvents; minRetryMs?: number }): BotsApiPoller {
  const state: PollOutcome = { success: false, lastSuccessMs: null };
  let running: Promise<void> | null = null;
  let timer: NodeJS.Timeout | null = null;
  let stopped = false;
  let failed = false;
  const pollOnce = async (): Promise<void> => {
    try {
      const reply = await fetchBots({ url: o.url, bearer: o.bearer, etag: await o.store.apiEtag(), ...(o.minRetryMs !== undefined ? { minRetryMs: o.minRetryMs } : {}) });
      if (stopped) return; // the master is stopping: the registry may be closed
      if (!reply.unchanged) {
        const result = await o.store.syncFromApi(reply.document.bots, reply.etag);
        const changed = result.added.length + result.changed.length + result.removed.length > 0;
        if (changed || reply.document.rejected.length > 0 || result.shadowed.length > 0) o.events.onApplied(result, reply.document.rejected);
      }
      if (failed) o.events.onRecovered?.();
      failed = false;
      state.success = true;
      state.lastSuccessMs = Date.now();
    } catch (err) {
      failed = true;
      state.success = false;
      o.events.onFailure(`bots API ${originOf(o.url)}: ${errorMessage(err)}`);
    }
  };
  const pollNow = (): Promise<void> => {
    if (running) return running;
    if (timer) clearTimeout(timer);
    running = pollOnce().finally(() => {
      running = null;
      if (!stopped) {
        timer = setTimeout(() => void pollNow(), o.intervalMs);
        timer.unref();
      }
    });
    return running;
  };
  void pollNow();
  return {
    pollNow,
    outcome: () => ({ ...state }),
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
  };
}

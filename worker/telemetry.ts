/**
 * A worker's telemetry for the master's /metrics: updates received and dropped as
 * duplicates, handler durations in fixed buckets (HANDLER_BUCKETS_S), and Bot API
 * errors by method and code (HTTP status, or `network` when no reply came). All
 * counts since the worker started; the master adds them across worker restarts.
 * Bounded: at most MAX_API_ERROR_SERIES (method, code) pairs, the rest under `other` (apiErrorKey).
 */
import { API_METHOD, apiErrorKey, HANDLER_BUCKETS_S, MAX_API_ERROR_SERIES, type WorkerTelemetry } from './protocol.js';

/** The counters of one worker process. */
export interface Telemetry {
  received(): void;
  deduplicated(): void;
  /** One handler settled after `seconds`. */
  handler(seconds: number): void;
  /** A Bot API call of `method` failed with `code` (HTTP status or `network`). */
  apiError(method: string, code: number | 'network'): void;
  snapshot(): WorkerTelemetry;
  /** How many times a counter moved: unchanged between two heartbeats, the second says only that it is alive. */
  changes(): number;
}

export function createTelemetry(): Telemetry {
  let changes = 0;
  let received = 0;
  let deduplicated = 0;
  const buckets = new Array<number>(HANDLER_BUCKETS_S.length + 1).fill(0);
  let handlerSecondsSum = 0;
  const apiErrors = new Map<string, [string, string, number]>();
  return {
    received: () => void (received++, changes++),
    deduplicated: () => void (deduplicated++, changes++),
    changes: () => changes,
    handler(seconds) {
      changes++;
      let i = 0;
      while (i < HANDLER_BUCKETS_S.length && seconds > HANDLER_BUCKETS_S[i]!) i++;
      buckets[i]!++;
      handlerSecondsSum += seconds;
    },
    apiError(method, code) {
      changes++;
      const c = String(code);
      const key = apiErrorKey(apiErrors, method, c, MAX_API_ERROR_SERIES);
      if (key === null) return;
      const row = apiErrors.get(key);
      if (row) row[2]++;
      else apiErrors.set(key, [key.slice(0, key.indexOf(' ')), c, 1]);
    },
    snapshot: () => ({ received, deduplicated, handlerBuckets: [...buckets], handlerSecondsSum, apiErrors: [...apiErrors.values()].map((r) => [...r] as [string, string, number]) }),
  };
}

/** The method of a Bot API URL (`…/bot<token>/<method>`), never the token. */
export function methodOf(url: string): string {
  const i = url.lastIndexOf('/');
  const m = url.slice(i + 1).split('?')[0]!;
  return API_METHOD.test(m) ? m : 'other';
}

/** `fetch` that counts each failed Bot API reply (not 2xx) and each call that got none, then answers as `fetch` did. */
export function countingFetch(inner: typeof fetch, t: Telemetry): typeof fetch {
  return async (input, init) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    try {
      const res = await inner(input, init);
      if (!res.ok) t.apiError(methodOf(url), res.status);
      return res;
    } catch (err) {
      t.apiError(methodOf(url), 'network');
      throw err;
    }
  };
}

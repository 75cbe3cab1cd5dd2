/**
 * The fetch botfleet's Bot API clients use (node-telegram-bot-api's injectable
 * `TransportOptions.fetch`), in workers and in the master's own calls. Plain
 * bodies (urlencoded forms, strings: every call without a file) go through
 * node-fetch over node:http; anything else (a streamed multipart upload) through
 * the global fetch (undici).
 *
 * Why: undici compiles its WebAssembly HTTP parser in every process on the first
 * request, measured here at 150-180 ms CPU and ~3-5 MB more PSS per worker than
 * node-fetch (60 ms). In a fleet that is paid by every bot at start, on 2 cores.
 * Uploads still load undici, lazily, only in the bots that upload. The master
 * uses it too, so its setWebhook/deleteWebhook calls do not load undici either.
 */
import type { RequestInit as NodeFetchInit } from 'node-fetch';

/** Loaded on the first request, after the worker said `ready` (its import costs ~20 ms). */
let nodeFetch: Promise<typeof import('node-fetch').default> | undefined;

/** Load node-fetch now (the master does, during its init, so no fork-time call pays the import). */
export async function preloadBotApiFetch(): Promise<void> {
  await (nodeFetch ??= import('node-fetch').then((m) => m.default));
}

/** A `fetch` for a Bot API client. Same contract as the global fetch. */
export const botApiFetch: typeof fetch = async (input, init) => {
  const body = init?.body;
  const plain = body === undefined || body === null || typeof body === 'string' || body instanceof URLSearchParams;
  if (!plain || typeof input !== 'string') return globalThis.fetch(input, init);
  const f = await (nodeFetch ??= import('node-fetch').then((m) => m.default));
  return (await f(input, init as NodeFetchInit)) as unknown as Response;
};

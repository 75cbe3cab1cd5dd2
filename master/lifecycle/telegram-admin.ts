/**
 * The master's own Bot API calls, made before a bot's worker starts: `setWebhook`
 * for a webhook bot (url `WEBHOOK_HOST/webhook/<botId>`, the per-bot
 * `secret_token`), `deleteWebhook` for a polling bot (getUpdates answers 409
 * while a webhook is set: https://core.telegram.org/bots/api#getupdates).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import pRetry, { AbortError } from 'p-retry';
import { BotApiError, callBotApi } from '../../common/bot-api-http.js';
import { errorMessage } from '../../common/errors.js';
import type { DeliveryMode } from '../../worker/protocol.js';

/** The outcome, for the supervisor to act on. `tokenRejected` = Telegram said 401. */
export type AdminResult =
  | { ok: true; mode: DeliveryMode; note: string | null }
  | { ok: false; tokenRejected: boolean; message: string };

/** What {@link prepareDelivery} needs to know about one bot. */
export interface DeliveryRequest {
  botId: string;
  token: string;
  apiRoot: string;
  mode: DeliveryMode;
  webhookHost: string | undefined;
  secretToken: string;
  autoSwitch: boolean;
}

/**
 * Admin calls must not hang a start: 10 s each, retried by p-retry up to twice on a
 * transient error (network, 5xx, 429) with jittered exponential backoff from 300 ms
 * (at most 3 s); a 429 first waits its `retry_after` (Bot API: "Flood control").
 * Any other 4xx fails at once with Telegram's description.
 */
const ADMIN_TIMEOUT_MS = 10_000;
const ADMIN_RETRIES = 2;
const ADMIN_RETRY_MIN_MS = 300;
const ADMIN_RETRY_MAX_MS = 3000;
/** Longest `retry_after` honoured in a start; a longer flood wait fails the start (it is retried with backoff). */
const MAX_RETRY_AFTER_MS = 30_000;

async function admin<T = unknown>(r: DeliveryRequest, method: string, params: object): Promise<T> {
  return pRetry(async () => {
    try {
      return await callBotApi<T>(r.apiRoot, r.token, method, params, { timeoutMs: ADMIN_TIMEOUT_MS });
    } catch (err) {
      if (!(err instanceof BotApiError) || !err.transient) throw new AbortError(err instanceof Error ? err : String(err));
      const waitMs = (err.retryAfterSec ?? 0) * 1000;
      if (waitMs > MAX_RETRY_AFTER_MS) throw new AbortError(err);
      if (waitMs > 0) await sleep(waitMs);
      throw err;
    }
  }, { retries: ADMIN_RETRIES, minTimeout: ADMIN_RETRY_MIN_MS, maxTimeout: ADMIN_RETRY_MAX_MS, randomize: true });
}

/** `max_connections` botfleet sets (Telegram's default, https://core.telegram.org/bots/api#setwebhook). */
export const WEBHOOK_MAX_CONNECTIONS = 40;

const webhookParams = (r: DeliveryRequest) => ({
  url: `${r.webhookHost}/webhook/${encodeURIComponent(r.botId)}`, secret_token: r.secretToken, max_connections: WEBHOOK_MAX_CONNECTIONS,
});

/**
 * Compare the bot's registration (getWebhookInfo) with what botfleet sets, and set it
 * again on a mismatch: another tool that called setWebhook or deleteWebhook with this
 * token (a common failure of hosts running many bots). The secret cannot be read back
 * (WebhookInfo has no such field); a foreign secret shows as 401s in `/webhook/stats`.
 * @returns what had drifted (e.g. `url "https://other/x"`), or null when all matched
 * @throws BotApiError when Telegram cannot be asked or the new setWebhook fails
 */
export async function checkWebhook(r: DeliveryRequest): Promise<string | null> {
  const want = webhookParams(r);
  const info = await admin<{ url?: unknown; max_connections?: unknown }>(r, 'getWebhookInfo', {});
  const drift: string[] = [];
  if (info.url !== want.url) drift.push(`url ${JSON.stringify(String(info.url ?? '')).slice(0, 200)}`);
  if (info.max_connections !== undefined && info.max_connections !== want.max_connections) drift.push(`max_connections ${String(info.max_connections).slice(0, 20)}`);
  if (drift.length === 0) return null;
  await admin(r, 'setWebhook', want);
  return drift.join(', ');
}

const rejected = (err: unknown) => err instanceof BotApiError && err.errorCode === 401;

/** Make Telegram's side match the bot's mode; falls back to polling when allowed and `setWebhook` fails. */
export async function prepareDelivery(r: DeliveryRequest): Promise<AdminResult> {
  if (r.mode === 'webhook') {
    try {
      if (!r.webhookHost) throw new Error('WEBHOOK_HOST is not set');
      await admin(r, 'setWebhook', webhookParams(r));
      return { ok: true, mode: 'webhook', note: null };
    } catch (err) {
      if (rejected(err)) return { ok: false, tokenRejected: true, message: 'Telegram rejected the token (401 Unauthorized)' };
      if (!r.autoSwitch) return { ok: false, tokenRejected: false, message: `setWebhook failed: ${errorMessage(err)}` };
      const note = `setWebhook failed (${errorMessage(err)}); switched to polling`;
      const fallback = await prepareDelivery({ ...r, mode: 'polling' });
      return fallback.ok ? { ...fallback, note } : fallback;
    }
  }
  try {
    await admin(r, 'deleteWebhook', { drop_pending_updates: false });
    return { ok: true, mode: 'polling', note: null };
  } catch (err) {
    if (rejected(err)) return { ok: false, tokenRejected: true, message: 'Telegram rejected the token (401 Unauthorized)' };
    // Not fatal: if a webhook is still set the worker sees 409 and backs off, visibly.
    return { ok: true, mode: 'polling', note: `deleteWebhook failed: ${errorMessage(err)}` };
  }
}

/**
 * The master's own Bot API calls, made before a bot's worker starts: `setWebhook`
 * for a webhook bot (url `WEBHOOK_HOST/webhook/<botId>`, the per-bot
 * `secret_token`), `deleteWebhook` for a polling bot (getUpdates answers 409
 * while a webhook is set: https://core.telegram.org/bots/api#getupdates).
 */
import { Api, TelegramApiError } from 'node-telegram-bot-api';
import { botApiFetch } from '../common/bot-api-fetch.js';
import { errorMessage } from '../common/errors.js';
import type { DeliveryMode } from '../worker/protocol.js';

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

/** Admin calls must not hang a start: 10 s, one retry on transient errors. */
const ADMIN_TIMEOUT_MS = 10_000;

/** Make Telegram's side match the bot's mode; falls back to polling when allowed and `setWebhook` fails. */
export async function prepareDelivery(r: DeliveryRequest): Promise<AdminResult> {
  const api = new Api(r.token, { apiRoot: r.apiRoot, timeoutMs: ADMIN_TIMEOUT_MS, maxRetries: 1, fetch: botApiFetch });
  const rejected = (err: unknown) => err instanceof TelegramApiError && err.errorCode === 401;
  if (r.mode === 'webhook') {
    try {
      if (!r.webhookHost) throw new Error('WEBHOOK_HOST is not set');
      await api.setWebhook({ url: `${r.webhookHost}/webhook/${encodeURIComponent(r.botId)}`, secret_token: r.secretToken });
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
    await api.deleteWebhook({ drop_pending_updates: false });
    return { ok: true, mode: 'polling', note: null };
  } catch (err) {
    if (rejected(err)) return { ok: false, tokenRejected: true, message: 'Telegram rejected the token (401 Unauthorized)' };
    // Not fatal: if a webhook is still set the worker sees 409 and backs off, visibly.
    return { ok: true, mode: 'polling', note: `deleteWebhook failed: ${errorMessage(err)}` };
  }
}

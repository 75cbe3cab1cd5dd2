/**
 * The emulator's Bot API answers and parameter checks, pure: the envelope
 * (https://core.telegram.org/bots/api#making-requests: `ok`, `result`, `error_code`,
 * `description`), parameter coercion as Telegram does it for form and query values,
 * and the checks of setWebhook and sendMessage with Telegram's error texts.
 */
import type { EmulatedBot } from './bot-state.js';

/** A method's parameters (JSON body, form or query string). */
export type Params = Record<string, unknown>;
/** An HTTP status and the JSON envelope. */
export type Answer = { status: number; body: Record<string, unknown> };

export const ok = (result: unknown): Answer => ({ status: 200, body: { ok: true, result } });
export const err = (status: number, description: string): Answer => ({ status, body: { ok: false, error_code: status, description } });

/** An integer parameter (a string from a form counts), else undefined. */
export const int = (v: unknown): number | undefined => (v === undefined || v === '' ? undefined : Number.isFinite(Number(v)) ? Math.trunc(Number(v)) : undefined);
/** A JSON-serialized parameter (allowed_updates, reply_markup) given as a string, parsed; anything else as given. */
export const json = (v: unknown): unknown => {
  if (typeof v !== 'string') return v;
  try { return JSON.parse(v); } catch { return v; }
};
export const bool = (v: unknown): boolean => v === true || v === 'true' || v === '1';

/** setWebhook's parameters checked (https://core.telegram.org/bots/api#setwebhook): the webhook to set (url '' removes it), or the 400. */
export function webhookRequest(p: Params): Answer | { url: string; secretToken: string | undefined; maxConnections: number; allowedUpdates: string[] | undefined } {
  const url = String(p.url ?? '');
  if (url === '') return { url, secretToken: undefined, maxConnections: 40, allowedUpdates: undefined };
  let parsed: URL;
  try { parsed = new URL(url); } catch { return err(400, 'Bad Request: invalid webhook URL specified'); }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') return err(400, 'Bad Request: bad webhook: unsupported URL protocol');
  const secretToken = p.secret_token === undefined ? undefined : String(p.secret_token);
  if (secretToken !== undefined && !/^[A-Za-z0-9_-]{1,256}$/.test(secretToken)) return err(400, 'Bad Request: secret token contains unallowed characters');
  const maxConnections = Math.min(100, Math.max(1, int(p.max_connections) ?? 40));
  const allowed = json(p.allowed_updates);
  return { url, secretToken, maxConnections, allowedUpdates: Array.isArray(allowed) ? allowed.map(String) : undefined };
}

/** getWebhookInfo's result (https://core.telegram.org/bots/api#webhookinfo). */
export function webhookInfo(bot: EmulatedBot): Record<string, unknown> {
  const w = bot.webhook;
  return {
    url: w?.url ?? '', has_custom_certificate: false, pending_update_count: bot.pending.length,
    ...(w?.lastErrorDate ? { last_error_date: w.lastErrorDate, last_error_message: w.lastErrorMessage } : {}),
    ...(w ? { max_connections: w.maxConnections } : {}),
    ...(w?.allowedUpdates ? { allowed_updates: w.allowedUpdates } : {}),
  };
}

/** sendMessage's parameters checked (https://core.telegram.org/bots/api#sendmessage; text 1-4096 characters), or the 400. */
export function sendMessageRequest(p: Params): Answer | { chatId: number; text: string; extra: Record<string, unknown> } {
  const chatId = int(p.chat_id);
  if (chatId === undefined) return err(400, 'Bad Request: chat not found');
  const text = typeof p.text === 'string' ? p.text : p.text === undefined ? '' : String(p.text);
  if (text.trim() === '') return err(400, 'Bad Request: message text is empty');
  if (text.length > 4096) return err(400, 'Bad Request: message is too long');
  const replyParams = json(p.reply_parameters) as { message_id?: number } | undefined;
  const extra = {
    ...(p.reply_markup !== undefined ? { reply_markup: json(p.reply_markup) } : {}),
    ...(replyParams?.message_id !== undefined ? { reply_to_message_id: replyParams.message_id } : {}),
  };
  return { chatId, text, extra };
}

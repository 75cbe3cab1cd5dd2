/**
 * Webhook delivery as Telegram does it (https://core.telegram.org/bots/api#setwebhook):
 * each pending update is POSTed as JSON to the webhook URL with the
 * `X-Telegram-Bot-Api-Secret-Token` header, up to `max_connections` at once;
 * a 2xx confirms it; anything else is recorded as `last_error_message` and the
 * update is redelivered after a pause.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Update } from 'node-telegram-bot-api';
import type { EmulatedBot, WebhookState } from './bot-state.js';

const delivering = new WeakSet<EmulatedBot>();
/** Telegram gives a webhook about a minute; so does the emulator. */
const DELIVERY_TIMEOUT_MS = 60_000;
/** A balancer's wait for one backend's answer (nginx's proxy_read_timeout, made short for tests). */
const BALANCER_TIMEOUT_MS = 3000;

/** POST one update, counting its outcome in `bot.webhookAnswers`; @returns null on 2xx, else the error text Telegram would show. */
/** The next origin of the balancer that is not left out (any, when all are). */
function pickOrigin(lb: NonNullable<EmulatedBot['balance']>): string {
  const now = Date.now();
  for (let i = 0; i < lb.origins.length; i++) {
    const o = lb.origins[lb.next++ % lb.origins.length]!;
    if ((lb.downUntil?.get(o) ?? 0) <= now) return o;
  }
  return lb.origins[lb.next++ % lb.origins.length]!;
}

async function post(bot: EmulatedBot, hook: WebhookState, update: Update): Promise<string | null> {
  const lb = bot.balance;
  const origin = lb ? pickOrigin(lb) : null;
  const url = origin ? new URL(new URL(hook.url).pathname, origin).href : hook.url;
  const failed = (): void => void (lb && origin && (lb.downUntil ??= new Map()).set(origin, Date.now() + (lb.downMs ?? 1000)));
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(hook.secretToken ? { 'x-telegram-bot-api-secret-token': hook.secretToken } : {}) },
      body: JSON.stringify(update),
      // A balancer gives up on a backend sooner than Telegram does (a paused one never answers).
      signal: AbortSignal.timeout(lb ? (lb.timeoutMs ?? BALANCER_TIMEOUT_MS) : DELIVERY_TIMEOUT_MS),
    });
    await res.arrayBuffer();
    bot.webhookAnswers[res.status] = (bot.webhookAnswers[res.status] ?? 0) + 1;
    if (!res.ok) failed();
    return res.ok ? null : `Wrong response from the webhook: ${res.status} ${res.statusText}`;
  } catch (err) {
    bot.webhookAnswers.error = (bot.webhookAnswers.error ?? 0) + 1;
    failed();
    const cause = (err as { cause?: { code?: string } }).cause?.code;
    return cause === 'ECONNREFUSED' ? 'Connection refused' : `Connection error: ${cause ?? (err as Error).name}`;
  }
}

/**
 * Deliver `bot`'s pending updates until none is left, the webhook is removed, or
 * the emulator stops. Idempotent: a second call while a loop runs returns at once
 * (the running loop sees newly queued updates).
 */
export async function deliverWebhooks(bot: EmulatedBot, opts: { retryMs: number; stopped: () => boolean }): Promise<void> {
  if (delivering.has(bot)) return;
  delivering.add(bot);
  try {
    while (!opts.stopped() && bot.webhook && bot.pending.length > 0) {
      const hook = bot.webhook;
      const batch = bot.take(bot.balance ? 1 : hook.maxConnections, hook.allowedUpdates);
      if (batch.length === 0) {
        bot.pending = []; // only updates of types the webhook does not want: Telegram drops them
        break;
      }
      bot.deliveries += batch.length;
      const results = await Promise.all(batch.map((u) => post(bot, hook, u)));
      const done = new Set(batch.filter((_, i) => results[i] === null).map((u) => u.update_id));
      bot.pending = bot.pending.filter((u) => !done.has(u.update_id));
      const failure = results.find((r) => r !== null);
      if (failure) {
        hook.lastErrorDate = Math.floor(Date.now() / 1000);
        hook.lastErrorMessage = failure;
        // Behind a balancer another origin may answer at once; else Telegram waits before it tries again.
        const lb = bot.balance;
        if (!lb || lb.origins.every((o) => (lb.downUntil?.get(o) ?? 0) > Date.now())) await sleep(opts.retryMs);
      }
    }
  } finally {
    delivering.delete(bot);
  }
}

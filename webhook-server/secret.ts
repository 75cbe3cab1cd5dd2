/**
 * The webhook secret check: Telegram sends the `secret_token` given to
 * `setWebhook` in `X-Telegram-Bot-Api-Secret-Token` on every call
 * (https://core.telegram.org/bots/api#setwebhook). Compared in constant time.
 */
import crypto from 'node:crypto';

/** True when `given` equals `expected`; time does not depend on where they differ (nor on length). */
export function secretMatches(given: string | undefined, expected: string): boolean {
  if (given === undefined) return false;
  // Hash both so the buffers have equal length and timingSafeEqual never throws.
  const a = crypto.createHash('sha256').update(given).digest();
  const b = crypto.createHash('sha256').update(expected).digest();
  return crypto.timingSafeEqual(a, b);
}

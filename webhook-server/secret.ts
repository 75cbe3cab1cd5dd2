/**
 * The webhook secret check: Telegram sends the `secret_token` given to
 * `setWebhook` in `X-Telegram-Bot-Api-Secret-Token` on every call
 * (https://core.telegram.org/bots/api#setwebhook). Compared in constant time.
 */
import crypto from 'node:crypto';

/**
 * True when `given` equals `expected` (a Buffer computed once per bot). Time does
 * not depend on where they differ; a length mismatch returns at once, which
 * reveals only the length, and every per-bot secret_token has the same public
 * length (43 characters of base64url).
 */
export function secretMatches(given: string | undefined, expected: Buffer): boolean {
  if (given === undefined) return false;
  const a = Buffer.from(given);
  return a.length === expected.length && crypto.timingSafeEqual(a, expected);
}

/**
 * Secrets at rest: the AES-256-GCM key that encrypts bot tokens, and the
 * webhook HMAC secret. Both come from the environment or from owner-only
 * (mode 0600) files generated in the home on first use.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ErrorCodes, fail } from '../common/errors.js';

/** Read a file of ours, or create it with `make()` (mode 0600, exclusive create). */
function readOrCreate(file: string, make: () => string): string {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  try {
    fs.writeFileSync(file, make() + '\n', { mode: 0o600, flag: 'wx' });
  } catch (err) {
    // Another process created it first: theirs wins.
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  return fs.readFileSync(file, 'utf8').trim();
}

/**
 * The 32-byte token key: `BOTFLEET_ENCRYPTION_KEY` (64 hex chars or base64 of 32
 * bytes) or the key file, created when missing unless `mustExist` (the registry
 * already holds tokens: a new key would silently orphan them).
 * @throws BotfleetError `BF_ERR_CRYPTO` on a malformed key, `BF_ERR_KEY_MISSING`.
 */
export function loadEncryptionKey(fromEnv: string | undefined, keyFile: string, mustExist = false): Buffer {
  if (fromEnv === undefined && mustExist && !fs.existsSync(keyFile)) {
    throw fail(ErrorCodes.KEY_MISSING, `the registry holds encrypted tokens but the key file ${keyFile} is missing: restore it or set BOTFLEET_ENCRYPTION_KEY (no new key was written)`);
  }
  const raw = fromEnv ?? readOrCreate(keyFile, () => crypto.randomBytes(32).toString('hex'));
  const key = /^[0-9a-fA-F]{64}$/.test(raw) ? Buffer.from(raw, 'hex') : Buffer.from(raw, 'base64');
  if (key.length !== 32) {
    throw fail(ErrorCodes.CRYPTO, `encryption key must be 32 bytes (64 hex chars or base64), ${fromEnv ? 'BOTFLEET_ENCRYPTION_KEY' : keyFile} is not`);
  }
  return key;
}

/** The webhook HMAC secret: `WEBHOOK_SECRET` or the generated secret file. */
export function loadWebhookSecret(fromEnv: string | undefined, secretFile: string): string {
  return fromEnv ?? readOrCreate(secretFile, () => crypto.randomBytes(32).toString('base64url'));
}

/**
 * The status server's bearer token when STATUS_AUTH is not set: generated once into
 * `data/status.token` (mode 0600, the master's), so no port of the master answers a bot,
 * which cannot read the home. A browser logs in with any user and this token as password.
 */
export function loadStatusToken(tokenFile: string): string {
  return readOrCreate(tokenFile, () => crypto.randomBytes(24).toString('base64url'));
}

/** Encrypt with AES-256-GCM; output `v1:<iv>:<tag>:<ciphertext>`, base64url parts. */
export function encryptToken(key: Buffer, token: string): string {
  const iv = crypto.randomBytes(12);
  const cipher = crypto.createCipheriv('aes-256-gcm', key, iv);
  const ct = Buffer.concat([cipher.update(token, 'utf8'), cipher.final()]);
  return ['v1', iv.toString('base64url'), cipher.getAuthTag().toString('base64url'), ct.toString('base64url')].join(':');
}

/** Decrypt {@link encryptToken}'s output. @throws BotfleetError `BF_ERR_CRYPTO` (wrong key or tampered). */
export function decryptToken(key: Buffer, sealed: string): string {
  const [v, iv, tag, ct] = sealed.split(':');
  if (v !== 'v1' || !iv || !tag || ct === undefined) throw fail(ErrorCodes.CRYPTO, 'stored token is not in v1 format');
  try {
    const decipher = crypto.createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'));
    decipher.setAuthTag(Buffer.from(tag, 'base64url'));
    return Buffer.concat([decipher.update(Buffer.from(ct, 'base64url')), decipher.final()]).toString('utf8');
  } catch (err) {
    throw fail(ErrorCodes.CRYPTO, 'stored token cannot be decrypted (wrong encryption key?)', err);
  }
}

/** Telegram's token shape: `<bot id digits>:<35 chars of [A-Za-z0-9_-]>`. */
export const TOKEN_PATTERN = /^\d{5,15}:[A-Za-z0-9_-]{35}$/;

/** A token safe to show: `123456:AB…yz`. */
export function maskToken(token: string): string {
  const [id, rest = ''] = token.split(':');
  return `${id}:${rest.slice(0, 2)}…${rest.slice(-2)}`;
}

/**
 * Per-bot webhook `secret_token` = HMAC-SHA256(secret, botId), base64url (43 chars,
 * inside the Bot API's 1-256 chars of [A-Za-z0-9_-]).
 */
export function webhookSecretToken(secret: string, botId: string): string {
  return crypto.createHmac('sha256', secret).update(botId).digest('base64url');
}

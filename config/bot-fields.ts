/**
 * The fields of one bot's configuration and their rules, shared by every source of
 * configurations: the SQLite registry (CLI edits) and the bots API (BOTS_API_URL).
 * Pure: each check returns a one-line problem (never echoing a token) or null.
 */
import { TOKEN_PATTERN } from './secrets.js';

/** A bot id: lower-case letters, digits, `_` and `-`, 1-64 characters, starting with a letter or digit (used in log file names and URLs). */
export const BOT_ID_PATTERN = /^[a-z0-9][a-z0-9_-]{0,63}$/;

/** The delivery modes a bot may name; absent (null) means the master's BOT_MODE. */
export const BOT_MODES: ReadonlySet<string> = new Set(['polling', 'webhook', 'auto']);

/** Longest bot name kept (characters); the status page and the CLI show it. */
export const MAX_NAME_LENGTH = 128;

/** Largest settings object (bytes of its JSON): it travels to the worker in one IPC frame. */
export const MAX_SETTINGS_BYTES = 64 * 1024;

/** Fields of a bot as a source gives them; absent = not given. */
export interface BotFields {
  name?: string;
  token?: string;
  mode?: string | null;
  handler?: string;
  settings?: unknown;
  apiRoot?: string | null;
}

/** The first problem with `b`'s given fields, or null. The token itself never appears in the text. */
export function botFieldsProblem(b: BotFields): string | null {
  if (b.token !== undefined && !TOKEN_PATTERN.test(b.token)) return 'token does not look like a Telegram bot token (<digits>:<35 characters>)';
  if (b.mode !== undefined && b.mode !== null && !BOT_MODES.has(b.mode)) return `mode must be polling, webhook or auto, got "${b.mode.slice(0, 32)}"`;
  if (b.name !== undefined && b.name.trim() === '') return 'name must not be empty';
  if (b.name !== undefined && b.name.length > MAX_NAME_LENGTH) return `name is longer than ${MAX_NAME_LENGTH} characters`;
  if (b.handler !== undefined && b.handler.trim() === '') return 'handler must not be empty';
  if (b.settings !== undefined) {
    if (typeof b.settings !== 'object' || b.settings === null || Array.isArray(b.settings)) return 'settings must be a JSON object';
    if (Buffer.byteLength(JSON.stringify(b.settings)) > MAX_SETTINGS_BYTES) return `settings are larger than ${MAX_SETTINGS_BYTES} bytes of JSON`;
  }
  if (b.apiRoot !== undefined && b.apiRoot !== null) {
    let u: URL | null = null;
    try {
      u = new URL(b.apiRoot);
    } catch {
      // reported below
    }
    if (!u || (u.protocol !== 'http:' && u.protocol !== 'https:')) return 'apiRoot must be an http(s) URL';
  }
  return null;
}

/**
 * The bots API's document (BOTS_API_URL): its JSON schema and the pure parse of one
 * response body into entries. Schema (docs/operations.md, "Configurations from an API"):
 *
 *   { "bots": [ { "id": "shop", "name": "Shop", "token": "<digits>:<35 chars>",
 *                 "mode": "polling" | "webhook" | "auto" | null, "handler": "echo",
 *                 "settings": { ... }, "enabled": true, "apiRoot": null } ] }
 *
 * A bare array of entries is accepted too. `id` and `token` are required; `name`
 * defaults to the id, `handler` to `echo`, `settings` to `{}`, `enabled` to true.
 * One bad entry never spoils the rest: with a usable id it becomes that bot's
 * invalid row (the bot is stopped with the reason); without one it is rejected with
 * its index. A body that is not such a document at all is an error (the last good
 * list stays in force).
 */
import path from 'node:path';
import { BotfleetError, ErrorCodes } from '../common/errors.js';
import { BOT_ID_PATTERN, botFieldsProblem, MAX_NAME_LENGTH } from './bot-fields.js';

/** Most entries one document may hold (the fleet's own cap is MAX_TOTAL_WORKERS). */
export const MAX_API_ENTRIES = 10_000;

/** One bot as the API gives it, checked. `invalid` is the first problem found (then the other fields are best effort and the bot does not start). */
export interface ApiBot {
  id: string;
  name: string;
  /** As given; may be malformed when `invalid` is set (it is stored encrypted all the same, never logged). */
  token: string;
  mode: 'polling' | 'webhook' | 'auto' | null;
  handler: string;
  settings: Record<string, unknown>;
  enabled: boolean;
  apiRoot: string | null;
  invalid: string | null;
}

/** The parse of one document: usable entries, and one line per entry that names no bot. */
export interface ApiDocument {
  bots: ApiBot[];
  rejected: string[];
}

/** What applying one document changed, by bot id. `shadowed`: listed by the API but held by a bot added with the CLI (the local one wins). */
export interface ApiSyncResult {
  added: string[];
  changed: string[];
  removed: string[];
  shadowed: string[];
}

/** Why a document as a whole is refused: one line (`BF_ERR_BOTS_API`). */
export class BotsApiDocumentError extends BotfleetError {
  constructor(message: string) {
    super(ErrorCodes.BOTS_API, message);
  }
}

/**
 * A handler the API may name: a built-in name, or a module path relative to the home
 * that stays inside it (no absolute path, no `..`): a remote document must not make a
 * worker import an arbitrary file of the host.
 */
export function apiHandlerProblem(handler: string): string | null {
  if (/^[a-z][a-z0-9_-]*$/.test(handler)) return null; // a built-in name; the worker reports an unknown one (exit 78, config)
  if (path.isAbsolute(handler) || handler.split(/[\\/]/).includes('..')) return `handler "${handler.slice(0, 64)}" must be a built-in name or a path inside the home`;
  return null;
}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/**
 * Parse a response body (already JSON-decoded).
 * @throws BotsApiDocumentError when `body` is not `{ "bots": [...] }` or an array, or holds more than {@link MAX_API_ENTRIES}
 */
export function parseBotsDocument(body: unknown): ApiDocument {
  const list = Array.isArray(body) ? body : typeof body === 'object' && body !== null && Array.isArray((body as { bots?: unknown }).bots) ? (body as { bots: unknown[] }).bots : null;
  if (!list) throw new BotsApiDocumentError('the document is neither {"bots": [...]} nor an array of bots');
  if (list.length > MAX_API_ENTRIES) throw new BotsApiDocumentError(`the document lists ${list.length} bots, more than ${MAX_API_ENTRIES}`);
  const bots: ApiBot[] = [];
  const rejected: string[] = [];
  const seen = new Set<string>();
  list.forEach((raw, i) => {
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return void rejected.push(`entry ${i}: not an object`);
    const e = raw as Record<string, unknown>;
    const id = str(e.id);
    if (id === undefined || !BOT_ID_PATTERN.test(id)) return void rejected.push(`entry ${i}: id missing or not matching ${BOT_ID_PATTERN}`);
    if (seen.has(id)) return void rejected.push(`entry ${i}: id "${id}" listed twice (the first one is kept)`);
    seen.add(id);
    bots.push(checkEntry(id, e));
  });
  return { bots, rejected };
}

function checkEntry(id: string, e: Record<string, unknown>): ApiBot {
  const problems: string[] = [];
  const field = <T>(key: string, ok: (v: unknown) => v is T, fallback: T, want: string): T => {
    const v = e[key];
    if (v === undefined) return fallback;
    if (ok(v)) return v;
    problems.push(`${key} must be ${want}`);
    return fallback;
  };
  const isStr = (v: unknown): v is string => typeof v === 'string';
  const isStrOrNull = (v: unknown): v is string | null => v === null || typeof v === 'string';
  const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  const isBool = (v: unknown): v is boolean => typeof v === 'boolean';
  const token = typeof e.token === 'string' ? e.token : '';
  if (typeof e.token !== 'string') problems.push('token is missing');
  const bot: ApiBot = {
    id,
    name: field('name', isStr, id, 'a string'),
    token,
    mode: field('mode', isStrOrNull, null, 'a string or null') as ApiBot['mode'],
    handler: field('handler', isStr, 'echo', 'a string'),
    settings: field('settings', isObj, {}, 'a JSON object'),
    enabled: field('enabled', isBool, true, 'true or false'),
    apiRoot: field('apiRoot', isStrOrNull, null, 'a string or null'),
    invalid: null,
  };
  // What escapes the permission model is the operator's to grant (botfleet bots set), never the API's.
  if (bot.settings.allowChildProcess !== undefined || bot.settings.allowWorkerThreads !== undefined) problems.push('settings.allowChildProcess and settings.allowWorkerThreads are set by an operator with botfleet bots set, not by the bots API');
  const fieldProblem = problems[0] ?? botFieldsProblem({ ...bot, token: token === '' ? undefined : token }) ?? apiHandlerProblem(bot.handler);
  if (fieldProblem === null) return bot;
  // The bot will not start: keep only what shows it (bounded), and why.
  const name = bot.name.trim() === '' ? id : bot.name.slice(0, MAX_NAME_LENGTH);
  return { ...bot, name, mode: null, handler: 'echo', settings: {}, apiRoot: null, invalid: `bots API: ${fieldProblem}` };
}

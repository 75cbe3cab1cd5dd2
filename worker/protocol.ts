/**
 * The IPC protocol between master and worker: typed, versioned messages, one
 * discriminated union per direction, parsed at the boundary. Messages travel as
 * newline-delimited JSON on two pipes of ours (master/child-process.ts).
 * On the master's side a message of an unknown type is logged and dropped; one of
 * a known type that does not parse is a protocol violation (the worker is killed
 * with reason `protocol`). The worker drops whatever does not parse.
 */
import type { Update } from 'node-telegram-bot-api';
import { ErrorCodes, type ErrorCode } from '../common/errors.js';

/** Bumped on any incompatible change; both sides are built together, so a mismatch is a bug. */
export const PROTOCOL_VERSION = 1;

/** Exit code that tells the master "do not restart me" (sysexits EX_CONFIG). */
export const EXIT_CONFIG = 78;

/** Why a poison update was dead-lettered (master/delivery/poison.ts), the same text from either side. */
export const POISON_REASON = 'its worker died twice while it was the only update in flight';

/** The resolved delivery mode of one running bot. */
export type DeliveryMode = 'polling' | 'webhook';

/** What a worker is told about its bot; the token travels only here, never in argv or env. */
export interface WorkerBotConfig {
  id: string;
  name: string;
  token: string;
  apiRoot: string;
  mode: DeliveryMode;
  handler: string;
  settings: Record<string, unknown>;
  /** The library's retry and rate limiter for the handler's calls (node-telegram-bot-api TransportOptions); 0 turns a limit off. */
  api: BotApiPolicy;
}

/** Retries and rate limits of a handler's Bot API calls. Rates per second. */
export interface BotApiPolicy { maxRetries: number; retryBackoffMs: number; rateLimitGlobal: number; rateLimitPerChat: number }

/**
 * The fleet's policy with a bot's own overrides: settings keys named like the
 * policy's fields (`apiMaxRetries`, `apiRetryBackoffMs`, `rateLimitGlobal`,
 * `rateLimitPerChat`), each a non-negative integer; anything else is ignored.
 */
export function botApiPolicy(fleet: BotApiPolicy, settings: Record<string, unknown>): BotApiPolicy {
  const pick = (key: string, dflt: number) => {
    const v = settings[key];
    return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : dflt;
  };
  return {
    maxRetries: pick('apiMaxRetries', fleet.maxRetries), retryBackoffMs: pick('apiRetryBackoffMs', fleet.retryBackoffMs),
    rateLimitGlobal: pick('rateLimitGlobal', fleet.rateLimitGlobal), rateLimitPerChat: pick('rateLimitPerChat', fleet.rateLimitPerChat),
  };
}

/** Master -> worker. */
export type MasterMessage =
  | { v: 1; type: 'init'; bot: WorkerBotConfig; heartbeatIntervalMs: number; heartbeatTimeoutMs?: number; drainTimeoutMs: number; pollingTimeoutSec: number; dedupWindowMs: number; home: string; skipUpdateIds: number[]; ackedUpdateIds: number[]; probationUpdateIds?: number[]; leaseUntil?: number | null }
  /** The cluster's renew deadline, renewed (machine monotonic ms, common/mono.ts): past it the worker polls no more (worker/lease.ts). */
  | { v: 1; type: 'lease'; until: number; confirmed?: true }
  /** `replay`: an operator's `dlq replay`; handled even if the worker's skip list or dedup window holds its id. */
  | { v: 1; type: 'update'; updates: Update[]; replay?: true }
  | { v: 1; type: 'settings'; settings: Record<string, unknown> }
  | { v: 1; type: 'shutdown'; reason: string };

/** A worker's last non-fatal problem, shown in status. `code` is a Telegram error code or a short name. */
export interface WorkerLastError {
  code: string;
  message: string;
  at: number;
}

/** Counters a worker reports with every heartbeat. Bytes and counts, since the worker started. */
export interface WorkerCounters {
  messages: number;
  errors: number;
  queueDepth: number;
  rssBytes: number;
  lastError: WorkerLastError | null;
  /** The bot's @username once getMe has answered (it runs after `ready`, off the start path). */
  username: string | null;
  /** For /metrics; absent from workers of an older build. */
  telemetry?: WorkerTelemetry;
}

/**
 * Upper bounds (seconds) of the handler-duration histogram's buckets, a last +Inf bucket
 * after them: ten, so a bot costs 13 series for it (Prometheus clients' default has 11
 * from 5 ms to 10 s; handlers that call Telegram take tens of ms, slow ones seconds).
 */
export const HANDLER_BUCKETS_S: readonly number[] = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** Distinct (method, code) pairs a worker reports; more go under method `other`. */
export const MAX_API_ERROR_SERIES = 48;
/** Bot API method names as Telegram spells them (https://core.telegram.org/bots/api#available-methods); anything else is `other`. */
export const API_METHOD = /^[A-Za-z]{1,40}$/;
/** Rows for method `other` (one per code) beyond the bound of own rows. */
export const API_OTHER_ROWS = 16;

/**
 * The key (`method code`) a Bot API error is counted under in `rows`, which hold at most
 * `maxRows` own rows plus API_OTHER_ROWS `other` rows: its own while there is room, else
 * method `other`. @returns null when that has no room either (the error is not counted)
 */
export function apiErrorKey(rows: ReadonlyMap<string, unknown>, method: string, code: string, maxRows: number): string | null {
  const own = `${API_METHOD.test(method) ? method : 'other'} ${code}`;
  if (rows.has(own) || rows.size < maxRows) return own;
  const other = `other ${code}`;
  return rows.has(other) || rows.size < maxRows + API_OTHER_ROWS ? other : null;
}

/** A worker's counts since it started (worker/telemetry.ts). */
export interface WorkerTelemetry {
  /** Updates that reached the worker (polled or delivered), redeliveries included. */
  received: number;
  /** Updates dropped as already handled (the dedup window). */
  deduplicated: number;
  /** Handlers settled per bucket of HANDLER_BUCKETS_S (not cumulative), +Inf last. */
  handlerBuckets: number[];
  handlerSecondsSum: number;
  /** [method, code, count]: Bot API calls that failed, by Telegram method and HTTP status (or `network`). */
  apiErrors: Array<[string, string, number]>;
}

/** One settled update: `ok` is false when its handler failed. */
export interface UpdateAck {
  updateId: number;
  ok: boolean;
}

/** Why a worker is giving up; `token-rejected` and `handler-load` come with exit 78. */
export type WorkerFatalReason = 'token-rejected' | 'handler-load' | 'fatal';

/** The error catalog's code of each fatal reason (common/errors.ts), carried into the master's log line and `lastExit.errorCode`. */
export const FATAL_CODES: Readonly<Record<WorkerFatalReason, ErrorCode>> = {
  'token-rejected': ErrorCodes.BAD_TOKEN,
  'handler-load': ErrorCodes.HANDLER_LOAD,
  fatal: ErrorCodes.WORKER_FATAL,
};

/**
 * Worker -> master. In polling mode a worker sends `begin` when it takes updates
 * and `ack` when their handlers settle, so the master knows what was in flight if
 * the worker dies; in webhook mode the master already knows, and only `ack` is sent.
 * `update`, `begin` and `ack` carry every item of one event-loop turn (see
 * common/batcher.ts): one IPC message per turn, not per update.
 */
export type WorkerMessage =
  | { v: 1; type: 'ready' }
  | ({ v: 1; type: 'heartbeat' } & WorkerCounters)
  /** A heartbeat of a worker whose counters have not moved since its previous one (an idle bot: the cheapest beat). */
  | { v: 1; type: 'heartbeat'; same: true }
  | { v: 1; type: 'begin'; updateIds: number[] }
  | { v: 1; type: 'ack'; acks: UpdateAck[] }
  /** A poison update the worker skipped; `update` is kept in the dead-letter queue for replay. */
  | { v: 1; type: 'dlq'; updateId: number; error: string; update?: Update }
  | { v: 1; type: 'error'; reason: WorkerFatalReason; message: string }
  /** getUpdates answered 409 Conflict in a cluster: the worker polls no more until the master re-checks who owns the bot (a `lease` with `confirmed`). */
  | { v: 1; type: 'conflict' };

/** Most update ids in one `begin` or `ack` (a worker holds at most 64 updates in flight; one turn can settle a few hundred). */
export const MAX_IDS_PER_MESSAGE = 10_000;

type Obj = Record<string, unknown>;
const isObj = (x: unknown): x is Obj => typeof x === 'object' && x !== null && !Array.isArray(x);
const isInt = (x: unknown): x is number => Number.isSafeInteger(x);
const isStr = (x: unknown): x is string => typeof x === 'string';

/**
 * Deepest nesting accepted in an update (objects and arrays). Real updates nest
 * about 8 deep (a reply's quoted message's entities); 5,000 deep made the old IPC
 * serializer fail for every update in the same batch.
 */
export const MAX_UPDATE_DEPTH = 32;

/** True when `x` nests no deeper than `max` (iterative: a deep value cannot overflow our stack). */
export function withinDepth(x: unknown, max: number): boolean {
  const stack: Array<[unknown, number]> = [[x, 1]];
  while (stack.length > 0) {
    const [v, d] = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    if (d > max) return false;
    for (const child of Array.isArray(v) ? v : Object.values(v)) if (typeof child === 'object' && child !== null) stack.push([child, d + 1]);
  }
  return true;
}

/**
 * Why `u` is not a Bot API Update (https://core.telegram.org/bots/api#update), or
 * null when it is one: an object with a non-negative integer `update_id`, whose
 * every other field (the update's kind: `message`, `callback_query`, ...) is an
 * object, nesting at most {@link MAX_UPDATE_DEPTH} deep. Unknown kinds are
 * accepted (the Bot API adds them), but never as null, a number or a string.
 */
export function updateProblem(u: unknown): string | null {
  if (!isObj(u)) return 'not a JSON object';
  if (!isInt(u.update_id) || (u.update_id as number) < 0) return 'update_id is not a non-negative integer';
  for (const k in u) if (k !== 'update_id' && !isObj(u[k])) return `field "${k.slice(0, 40)}" is not an object`;
  if (!withinDepth(u, MAX_UPDATE_DEPTH)) return `nested deeper than ${MAX_UPDATE_DEPTH}`;
  return null;
}

/** True when `u` is a well-formed Update ({@link updateProblem} finds nothing). */
export function isUpdate(u: unknown): u is Update {
  return updateProblem(u) === null;
}

const isCount = (n: unknown): n is number => typeof n === 'number' && Number.isFinite(n) && n >= 0;

/** A well-formed, bounded {@link WorkerTelemetry}. */
function isTelemetry(t: unknown): t is WorkerTelemetry {
  return isObj(t) && isCount(t.received) && isCount(t.deduplicated) && isCount(t.handlerSecondsSum) &&
    Array.isArray(t.handlerBuckets) && t.handlerBuckets.length === HANDLER_BUCKETS_S.length + 1 && t.handlerBuckets.every(isCount) &&
    Array.isArray(t.apiErrors) && t.apiErrors.length <= MAX_API_ERROR_SERIES + API_OTHER_ROWS &&
    t.apiErrors.every((r) => Array.isArray(r) && r.length === 3 && isStr(r[0]) && API_METHOD.test(r[0]) && isStr(r[1]) && /^(\d{3}|network)$/.test(r[1]) && isCount(r[2]));
}

/** What the master makes of a worker's frame. */
export type ParsedWorkerMessage = WorkerMessage | { type: 'unknown'; name: string } | null;

const WORKER_TYPES = new Set(['ready', 'heartbeat', 'begin', 'ack', 'dlq', 'error', 'conflict']);

/**
 * Parse a message received by the master. @returns the message; `{type:'unknown'}`
 * for a well-formed frame of a type this master does not know (logged and dropped);
 * null when it breaks the protocol (a protocol violation).
 */
export function parseWorkerMessage(m: unknown): ParsedWorkerMessage {
  if (!isObj(m) || m.v !== PROTOCOL_VERSION || !isStr(m.type)) return null;
  if (!WORKER_TYPES.has(m.type)) return { type: 'unknown', name: m.type.slice(0, 40) };
  switch (m.type) {
    case 'ready':
    case 'conflict':
      return m as WorkerMessage;
    case 'heartbeat':
      if (m.same === true) return { v: 1, type: 'heartbeat', same: true };
      return [m.messages, m.errors, m.queueDepth, m.rssBytes].every((n) => typeof n === 'number') &&
        (m.lastError === null || (isObj(m.lastError) && isStr(m.lastError.code) && m.lastError.code.length <= 64 && isStr(m.lastError.message) && m.lastError.message.length <= 1000)) &&
        (m.username === null || (isStr(m.username) && m.username.length <= 64)) && (m.telemetry === undefined || isTelemetry(m.telemetry))
        ? (m as WorkerMessage) : null;
    case 'begin':
      return Array.isArray(m.updateIds) && m.updateIds.length <= MAX_IDS_PER_MESSAGE && m.updateIds.every(isInt) ? (m as WorkerMessage) : null;
    case 'ack':
      return Array.isArray(m.acks) && m.acks.length <= MAX_IDS_PER_MESSAGE && m.acks.every((a) => isObj(a) && isInt(a.updateId) && typeof a.ok === 'boolean') ? (m as WorkerMessage) : null;
    case 'dlq':
      return isInt(m.updateId) && isStr(m.error) && m.error.length <= 1000 && (m.update === undefined || isUpdate(m.update)) ? (m as WorkerMessage) : null;
    case 'error':
      return ['token-rejected', 'handler-load', 'fatal'].includes(m.reason as string) && isStr(m.message) && m.message.length <= 1000 ? (m as WorkerMessage) : null;
    default:
      return null;
  }
}

/** Parse a message received by a worker. @returns null when it is not a valid {@link MasterMessage}. */
export function parseMasterMessage(m: unknown): MasterMessage | null {
  if (!isObj(m) || m.v !== PROTOCOL_VERSION) return null;
  switch (m.type) {
    case 'init': {
      const b = m.bot;
      const ok = isObj(b) && isStr(b.id) && isStr(b.token) && isStr(b.apiRoot) && (b.mode === 'polling' || b.mode === 'webhook') &&
        isStr(b.handler) && isObj(b.settings) && isObj(b.api) && isInt(b.api.maxRetries) && isInt(b.api.retryBackoffMs) &&
        isInt(b.api.rateLimitGlobal) && isInt(b.api.rateLimitPerChat) && isInt(m.heartbeatIntervalMs) && (m.heartbeatTimeoutMs === undefined || isInt(m.heartbeatTimeoutMs)) && isInt(m.drainTimeoutMs) && isInt(m.pollingTimeoutSec) &&
        isInt(m.dedupWindowMs) && isStr(m.home) && Array.isArray(m.skipUpdateIds) && m.skipUpdateIds.every(isInt) &&
        Array.isArray(m.ackedUpdateIds) && m.ackedUpdateIds.every(isInt) &&
        (m.probationUpdateIds === undefined || (Array.isArray(m.probationUpdateIds) && m.probationUpdateIds.every(isInt))) &&
        (m.leaseUntil === undefined || m.leaseUntil === null || isInt(m.leaseUntil));
      return ok ? (m as MasterMessage) : null;
    }
    case 'update':
      // The master checked each update at its edge (updateProblem): only the id is checked again here.
      return Array.isArray(m.updates) && m.updates.every((u) => isObj(u) && isInt(u.update_id) && (u.update_id as number) >= 0) && (m.replay === undefined || m.replay === true) ? (m as MasterMessage) : null;
    case 'settings':
      return isObj(m.settings) ? (m as MasterMessage) : null;
    case 'shutdown':
      return isStr(m.reason) ? (m as MasterMessage) : null;
    case 'lease':
      return isInt(m.until) && (m.confirmed === undefined || m.confirmed === true) ? (m as MasterMessage) : null;
    default:
      return null;
  }
}

/**
 * The IPC protocol between master and worker: typed, versioned messages, one
 * discriminated union per direction, parsed at the boundary. Anything that does
 * not parse is logged and dropped by the receiver (never a crash).
 * Messages travel on Node's default JSON IPC serialization (measured faster than
 * 'advanced' for update-sized messages, DESIGN.md).
 */
import type { Update } from 'node-telegram-bot-api';

/** Bumped on any incompatible change; both sides are built together, so a mismatch is a bug. */
export const PROTOCOL_VERSION = 1;

/** Exit code that tells the master "do not restart me" (sysexits EX_CONFIG). */
export const EXIT_CONFIG = 78;

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
}

/** Master -> worker. */
export type MasterMessage =
  | { v: 1; type: 'init'; bot: WorkerBotConfig; heartbeatIntervalMs: number; drainTimeoutMs: number; pollingTimeoutSec: number; dedupWindowMs: number; home: string; skipUpdateIds: number[] }
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
  heapUsedBytes: number;
  lastError: WorkerLastError | null;
  /** The bot's @username once getMe has answered (it runs after `ready`, off the start path). */
  username: string | null;
}

/** One settled update: `ok` is false when its handler failed. */
export interface UpdateAck {
  updateId: number;
  ok: boolean;
}

/** Why a worker is giving up; `token-rejected` and `handler-load` come with exit 78. */
export type WorkerFatalReason = 'token-rejected' | 'handler-load' | 'fatal';

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
  | { v: 1; type: 'begin'; updateIds: number[] }
  | { v: 1; type: 'ack'; acks: UpdateAck[] }
  /** A poison update the worker skipped; `update` is kept in the dead-letter queue for replay. */
  | { v: 1; type: 'dlq'; updateId: number; error: string; update?: Update }
  | { v: 1; type: 'error'; reason: WorkerFatalReason; message: string };

type Obj = Record<string, unknown>;
const isObj = (x: unknown): x is Obj => typeof x === 'object' && x !== null && !Array.isArray(x);
const isInt = (x: unknown): x is number => Number.isSafeInteger(x);
const isStr = (x: unknown): x is string => typeof x === 'string';

/** True when `u` has the one field every Bot API Update has: an integer `update_id`. */
export function isUpdate(u: unknown): u is Update {
  return isObj(u) && isInt(u.update_id) && (u.update_id as number) >= 0;
}

/** Parse a message received by the master. @returns null when it is not a valid {@link WorkerMessage}. */
export function parseWorkerMessage(m: unknown): WorkerMessage | null {
  if (!isObj(m) || m.v !== PROTOCOL_VERSION) return null;
  switch (m.type) {
    case 'ready':
      return m as WorkerMessage;
    case 'heartbeat':
      return [m.messages, m.errors, m.queueDepth, m.rssBytes, m.heapUsedBytes].every((n) => typeof n === 'number') &&
        (m.lastError === null || (isObj(m.lastError) && isStr(m.lastError.code) && isStr(m.lastError.message))) &&
        (m.username === null || isStr(m.username))
        ? (m as WorkerMessage) : null;
    case 'begin':
      return Array.isArray(m.updateIds) && m.updateIds.every(isInt) ? (m as WorkerMessage) : null;
    case 'ack':
      return Array.isArray(m.acks) && m.acks.every((a) => isObj(a) && isInt(a.updateId) && typeof a.ok === 'boolean') ? (m as WorkerMessage) : null;
    case 'dlq':
      return isInt(m.updateId) && isStr(m.error) && (m.update === undefined || isUpdate(m.update)) ? (m as WorkerMessage) : null;
    case 'error':
      return ['token-rejected', 'handler-load', 'fatal'].includes(m.reason as string) && isStr(m.message) ? (m as WorkerMessage) : null;
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
        isStr(b.handler) && isObj(b.settings) && isInt(m.heartbeatIntervalMs) && isInt(m.drainTimeoutMs) && isInt(m.pollingTimeoutSec) &&
        isInt(m.dedupWindowMs) && isStr(m.home) && Array.isArray(m.skipUpdateIds) && m.skipUpdateIds.every(isInt);
      return ok ? (m as MasterMessage) : null;
    }
    case 'update':
      return Array.isArray(m.updates) && m.updates.every(isUpdate) && (m.replay === undefined || m.replay === true) ? (m as MasterMessage) : null;
    case 'settings':
      return isObj(m.settings) ? (m as MasterMessage) : null;
    case 'shutdown':
      return isStr(m.reason) ? (m as MasterMessage) : null;
    default:
      return null;
  }
}

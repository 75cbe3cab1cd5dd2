/**
 * One supervised child as the supervisor sees it: the state union, the allowed
 * transitions, and the status view. `master/supervisor.ts` alone mutates these.
 */
import type { ErrorCode } from '../../common/errors.js';
import type { WorkerLastError, DeliveryMode } from '../../worker/protocol.js';
import type { ChildLog } from "../host/child-log.js";
import type { WorkerProcess } from './child-process.js';
import type { Timer } from './clock.js';
import { newBotDelivery, type BotDelivery } from '../delivery/outbox.js';
import { emptyHistory, type RestartHistory } from './policy/restart.js';
import { newTotals, type BeatCounts, type BotTotals } from './counters.js';
import type { BotSpec } from './child-spec.js';

/** DESIGN.md's lifecycle states. */
export type ChildState = 'pending' | 'starting' | 'running' | 'draining' | 'backoff' | 'quarantined' | 'stopped';

/** DESIGN.md's causes of a restart, recorded as `lastExit.reason`. */
/** Every `lastExit.reason`, in the order docs and metrics list them. */
export const EXIT_REASONS = ['crash', 'exited', 'config', 'protocol', 'hung', 'memory', 'disk', 'startup-timeout', 'operator', 'rolling-restart', 'config-change'] as const;
export type ExitReason = (typeof EXIT_REASONS)[number];

/** Every allowed `from -> to`; anything else is a supervisor bug and is refused loudly. */
export const ALLOWED_TRANSITIONS: Readonly<Record<ChildState, readonly ChildState[]>> = {
  pending: ['starting', 'stopped', 'quarantined', 'backoff'],
  starting: ['running', 'draining', 'backoff', 'quarantined', 'stopped', 'pending'],
  running: ['draining', 'backoff', 'quarantined', 'stopped', 'pending'],
  draining: ['stopped', 'starting', 'backoff', 'quarantined', 'pending'],
  backoff: ['starting', 'stopped', 'quarantined', 'pending'],
  quarantined: ['starting', 'stopped', 'pending'],
  stopped: ['starting', 'pending', 'stopped', 'quarantined'],
};

/** What a stop or kill was for; decides what happens when the process exits. */
export type Intent = 'run' | 'stop' | 'restart';

/** How a child last ended. `at` is an ISO time. */
export interface LastExit {
  code: number | null;
  signal: string | null;
  reason: ExitReason;
  at: string;
  /** The catalog code of the worker's own fatal error (BF_ERR_BAD_TOKEN, BF_ERR_HANDLER_LOAD, BF_ERR_WORKER_FATAL), when it sent one. */
  errorCode?: ErrorCode;
}

/** The supervisor's record of one bot. */
export interface Child {
  botId: string;
  name: string;
  spec: BotSpec | null;
  /** Resolved delivery mode, set when delivery is prepared. */
  mode: DeliveryMode | null;
  state: ChildState;
  stateReason: string | null;
  intent: Intent;
  proc: WorkerProcess | null;
  launching: boolean;
  /** The spec's delivery must be (re)prepared with Telegram before the next fork. */
  prepareDelivery: boolean;
  startedAt: number | null;
  lastHeartbeatAt: number | null;
  /** Why the master ended the current process, if it did. */
  endReason: ExitReason | null;
  /** The worker's own last words (an IPC `error`), used as the quarantine reason. */
  fatalMessage: string | null;
  /** The catalog code of that message (worker/protocol.ts FATAL_CODES). */
  fatalCode: ErrorCode | null;
  /** What the current worker did to be killed with reason `protocol`. */
  protocolDetail: string | null;
  /** The uid the current worker runs as when it has its own (per-bot uids), else null. */
  uid: number | null;
  /** Worker exits since the master started, by recorded reason. */
  exitsByReason: Partial<Record<ExitReason, number>>;
  /** Frames of unknown type dropped (the first few are logged). */
  unknownMessages: number;
  username: string | null;
  note: string | null;
  messages: number;
  errors: number;
  queueDepth: number;
  rssBytes: number;
  cpuPercent: number | null;
  lastError: WorkerLastError | null;
  restartsTotal: number;
  /** Times its webhook registration was found changed and set again. */
  webhookDrifts: number;
  history: RestartHistory;
  quarantinedUntil: number | null;
  lastExit: LastExit | null;
  timer: Timer | null;
  releaseSlot: (() => void) | null;
  /** Its updates between intake and ack (the delivery wing's state; only delivery/ changes it). */
  delivery: BotDelivery;
  log: ChildLog | null;
  /** Counters since the master started, across worker restarts (counters.ts). */
  totals: BotTotals;
  /** The current worker's previous heartbeat counts (null until its first). */
  lastBeat: BeatCounts | null;
  /** Its last HISTORY_KEPT state changes and exits, oldest first (`botfleet describe`, the status page). */
  transitions: TransitionRecord[];
  exits: LastExit[];
}

/** State changes and exits kept per bot. */
export const HISTORY_KEPT = 20;

/** One state change; `at` is an ISO time. */
export interface TransitionRecord { from: ChildState; to: ChildState; reason: string | null; at: string }

/** Append `item` to `list`, keeping the last HISTORY_KEPT. */
export function keepRecent<T>(list: T[], item: T): void {
  list.push(item);
  if (list.length > HISTORY_KEPT) list.splice(0, list.length - HISTORY_KEPT);
}


/** A new record, `stopped` until the supervisor acts on it. */
export function newChild(botId: string, name: string, spec: BotSpec | null): Child {
  const c: Child = {
    botId, name, spec, mode: null, state: 'stopped', stateReason: null, intent: 'stop', proc: null, launching: false,
    prepareDelivery: true, startedAt: null, lastHeartbeatAt: null, endReason: null, fatalMessage: null, fatalCode: null, protocolDetail: null, unknownMessages: 0, uid: null, exitsByReason: {}, username: null,
    note: null, messages: 0, errors: 0, queueDepth: 0, rssBytes: 0, cpuPercent: null, lastError: null, restartsTotal: 0, webhookDrifts: 0,
    history: emptyHistory(), quarantinedUntil: null, lastExit: null, timer: null, releaseSlot: null, delivery: newBotDelivery(), log: null,
    totals: newTotals(), lastBeat: null, transitions: [], exits: [],
  };
  return c;
}

/** One row of `GET /api/workers/status` (DESIGN.md). Never a token. */
export interface WorkerStatus {
  botId: string;
  name: string;
  state: ChildState;
  stateReason: string | null;
  mode: DeliveryMode | null;
  pid: number | null;
  uptimeMs: number;
  rssBytes: number;
  cpuPercent: number | null;
  restarts: number;
  restartsLastHour: number;
  messages: number;
  errors: number;
  queueDepth: number;
  lastHeartbeatAt: string | null;
  lastExit: LastExit | null;
  /** Exits since the master started, by reason (`botfleet_worker_exits_total`). */
  exitsByReason: Partial<Record<ExitReason, number>>;
  lastError: WorkerLastError | null;
  quarantinedUntil: string | null;
  username: string | null;
  note: string | null;
  /** Times its webhook registration was found changed (another tool?) and set again, since the master started. */
  webhookDrifts: number;
  /** Updates since the master started, across worker restarts: reached a worker, handled, failed in the handler, dropped as duplicates. */
  updates: { received: number; handled: number; failed: number; deduplicated: number };
}

/**
 * The status view of a child at `now` (ms, the supervisor's monotonic clock);
 * `wall` turns a time on that clock into wall-clock ms for the ISO fields.
 */
export function childStatus(c: Child, now: number, periodMs: number, wall: (mono: number) => number = (t) => t): WorkerStatus {
  const live = c.proc !== null && c.startedAt !== null;
  return {
    botId: c.botId, name: c.name, state: c.state, stateReason: c.stateReason, mode: c.mode,
    pid: c.proc?.pid ?? null, uptimeMs: live ? now - c.startedAt! : 0, rssBytes: live ? c.rssBytes : 0, cpuPercent: live ? c.cpuPercent : null,
    restarts: c.restartsTotal, restartsLastHour: c.history.restarts.filter((t) => now - t < periodMs).length,
    messages: c.totals.handled, errors: c.totals.failed, queueDepth: c.queueDepth, // since the master started, across worker restarts
    lastHeartbeatAt: c.lastHeartbeatAt !== null ? new Date(wall(c.lastHeartbeatAt)).toISOString() : null,
    lastExit: c.lastExit, exitsByReason: { ...c.exitsByReason }, lastError: c.lastError,
    quarantinedUntil: c.quarantinedUntil !== null ? new Date(wall(c.quarantinedUntil)).toISOString() : null,
    username: c.username, note: c.note, webhookDrifts: c.webhookDrifts,
    updates: { received: c.totals.received, handled: c.totals.handled, failed: c.totals.failed, deduplicated: c.totals.deduplicated },
  };
}

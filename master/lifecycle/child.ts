/**
 * One supervised child as the supervisor sees it: its lifecycle (`life`, the machine of
 * phase.ts and step.ts), its live process handle, and what it reports (counters, memory,
 * heartbeats), with the status view. Only the dispatcher (dispatcher.ts) changes `life`,
 * `state`, `stateReason` and `proc`.
 */
import type { WorkerLastError } from '../../worker/protocol.js';
import type { ChildLog } from "../host/child-log.js";
import type { WorkerProcess } from './child-process.js';
import { newBotDelivery, type BotDelivery } from '../delivery/in-flight.js';
import { emptyHistory, type RestartHistory } from './policy/restart.js';
import { newTotals, type BeatCounts, type BotTotals } from './counters.js';
import type { BotSpec } from '../../config/bot-spec.js';
import { newLife, procOf, type ChildState, type ExitReason, type LastExit, type Life } from './phase.js';
import type { DeliveryMode } from '../../worker/protocol.js';

export { EXIT_REASONS } from './phase.js';
export type { ChildState, ExitReason, LastExit } from './phase.js';

/**
 * Every shown `from -> to` the machine may produce; the dispatcher logs any other as a
 * supervisor bug (the table test checks the step against it).
 */
export const ALLOWED_TRANSITIONS: Readonly<Record<ChildState, readonly ChildState[]>> = {
  pending: ['starting', 'stopped', 'quarantined', 'backoff'],
  starting: ['running', 'draining', 'backoff', 'quarantined', 'stopped', 'pending'],
  running: ['draining', 'backoff', 'quarantined', 'stopped'],
  draining: ['stopped', 'starting', 'pending'],
  backoff: ['starting', 'stopped', 'pending'],
  quarantined: ['starting', 'stopped', 'pending'],
  stopped: ['starting', 'pending', 'quarantined'],
};

/** The supervisor's record of one bot. */
export interface Child {
  botId: string;
  name: string;
  spec: BotSpec | null;
  /** Its lifecycle: the phase and what the machine keeps (history, attempts, mode). */
  life: Life;
  /** What `life` shows (kept beside it by the dispatcher for readers). */
  state: ChildState;
  stateReason: string | null;
  /** The live worker's handle, while `life` has a process. */
  proc: WorkerProcess | null;
  lastHeartbeatAt: number | null;
  /** The uid the current worker runs as when it has its own (per-bot uids), else null. */
  uid: number | null;
  /** Worker exits since the master started, by recorded reason. */
  exitsByReason: Partial<Record<ExitReason, number>>;
  /** Frames of unknown type dropped (the first few are logged). */
  unknownMessages: number;
  username: string | null;
  messages: number;
  errors: number;
  queueDepth: number;
  rssBytes: number;
  cpuPercent: number | null;
  lastError: WorkerLastError | null;
  /** Times its webhook registration was found changed and set again. */
  webhookDrifts: number;
  lastExit: LastExit | null;
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


/** A new record, `stopped` until the supervisor acts on it; `history` is what an earlier master kept. */
export function newChild(botId: string, name: string, spec: BotSpec | null, history: RestartHistory = emptyHistory()): Child {
  return {
    botId, name, spec, life: newLife(history), state: 'stopped', stateReason: null, proc: null, lastHeartbeatAt: null, uid: null, exitsByReason: {},
    unknownMessages: 0, username: null, messages: 0, errors: 0, queueDepth: 0, rssBytes: 0, cpuPercent: null, lastError: null, webhookDrifts: 0,
    lastExit: null, delivery: newBotDelivery(), log: null, totals: newTotals(), lastBeat: null, transitions: [], exits: [],
  };
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
  /** In a cluster, the member that runs it (this master's id when it runs here; null while no member does); absent without a cluster. */
  owner?: string | null;
}

/**
 * The status view of a child at `now` (ms, the supervisor's monotonic clock);
 * `wall` turns a time on that clock into wall-clock ms for the ISO fields.
 */
export function childStatus(c: Child, now: number, periodMs: number, wall: (mono: number) => number = (t) => t): WorkerStatus {
  const proc = procOf(c.life.phase);
  const live = c.proc !== null && proc !== null;
  const until = c.life.phase.tag === 'quarantined' ? c.life.phase.until : null;
  return {
    botId: c.botId, name: c.name, state: c.state, stateReason: c.stateReason, mode: c.life.mode,
    pid: c.proc?.pid ?? null, uptimeMs: live ? now - proc.startedAt : 0, rssBytes: live ? c.rssBytes : 0, cpuPercent: live ? c.cpuPercent : null,
    restarts: c.life.restarts, restartsLastHour: c.life.history.restarts.filter((t) => now - t < periodMs).length,
    messages: c.totals.handled, errors: c.totals.failed, queueDepth: c.queueDepth, // since the master started, across worker restarts
    lastHeartbeatAt: c.lastHeartbeatAt !== null ? new Date(wall(c.lastHeartbeatAt)).toISOString() : null,
    lastExit: c.lastExit, exitsByReason: { ...c.exitsByReason }, lastError: c.lastError,
    quarantinedUntil: until !== null ? new Date(wall(until)).toISOString() : null,
    username: c.username, note: c.life.note, webhookDrifts: c.webhookDrifts,
    updates: { received: c.totals.received, handled: c.totals.handled, failed: c.totals.failed, deduplicated: c.totals.deduplicated },
  };
}

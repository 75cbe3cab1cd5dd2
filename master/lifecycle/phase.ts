/**
 * The child lifecycle as one machine (DESIGN.md, "The child lifecycle"): the state
 * as a discriminated union carrying its own data ({@link Phase}), every event that
 * can change it ({@link LifeEvent}), and every effect a step asks for ({@link Effect}).
 * Types and small pure readers only; `step.ts` decides, `dispatcher.ts` applies.
 */
import type { ErrorCode } from '../../common/errors.js';
import type { DeliveryMode } from '../../worker/protocol.js';
import type { RestartHistory, RestartPolicy } from './policy/restart.js';

/** DESIGN.md's lifecycle states, as `status` and the API show them. */
export type ChildState = 'pending' | 'starting' | 'running' | 'draining' | 'backoff' | 'quarantined' | 'stopped';

/** Every `lastExit.reason`, in the order docs and metrics list them (DESIGN.md's causes of a restart). */
export const EXIT_REASONS = ['crash', 'exited', 'config', 'protocol', 'hung', 'memory', 'disk', 'startup-timeout', 'operator', 'rolling-restart', 'config-change'] as const;
export type ExitReason = (typeof EXIT_REASONS)[number];

/** A live worker process as the machine knows it: times in ms on the supervisor's monotonic clock. */
export interface Proc {
  pid: number;
  startedAt: number;
  /** Why the master ended (or is ending) it, if it did; recorded as `lastExit.reason`. */
  killedFor: ExitReason | null;
  /** The worker's own last words (its `error` message) and their catalog code: the quarantine reason for `config`. */
  fatal: { message: string; code: ErrorCode | null } | null;
  /** What it did to be killed with `protocol`. */
  detail: string | null;
}

/** What follows a drain: stop, a restart at once, or stop and forget the bot (removed from the registry). */
export type AfterDrain = 'stop' | 'restart' | 'forget';

/**
 * Where a child is. Each tag shows as one {@link ChildState}: `waiting` and `preparing` as
 * `pending` (over capacity; Telegram's side under way), `forking` as `starting` (waiting
 * for a fork slot). `attempt` ties an asynchronous result (prepared, forked) to the launch
 * that asked for it: a result for an abandoned attempt changes nothing.
 */
export type Phase =
  | { tag: 'stopped'; why: string | null }
  | { tag: 'waiting'; why: string }
  | { tag: 'preparing'; attempt: number; why: string }
  | { tag: 'forking'; attempt: number; why: string }
  | { tag: 'starting'; proc: Proc; why: string }
  | { tag: 'running'; proc: Proc }
  | { tag: 'draining'; proc: Proc; then: AfterDrain; why: string; killed: boolean }
  | { tag: 'backoff'; until: number; why: string; cause: ExitReason }
  | { tag: 'quarantined'; until: number | null; why: string };

/** One child's lifecycle: its phase and what the machine remembers across phases. */
export interface Life {
  phase: Phase;
  history: RestartHistory;
  /** Telegram's side (setWebhook/deleteWebhook) must be prepared before the next fork. */
  needsPrepare: boolean;
  /** Launches begun so far (the current one's number). */
  attempt: number;
  /** Restarts since the master started (`restarts` in status). */
  restarts: number;
  /** The delivery mode Telegram's side was prepared for, and a note from it (a fallback to polling). */
  mode: DeliveryMode | null;
  note: string | null;
}

/** A restart history read back from the store, on this process's monotonic clock. */
export interface RestoredHistory { history: RestartHistory; quarantinedUntil: number | null; doNotRestart: boolean; reason?: string | null }

/** How a worker process ended (`code` null when a signal ended it). */
export interface ExitInfo { code: number | null; signal: string | null }

/** Everything that can happen to a child. Process events name their `pid`: one of an older process changes nothing. */
export type LifeEvent =
  | { type: 'configured'; restored: RestoredHistory | null }
  | { type: 'changed'; material: boolean; settings: boolean }
  | { type: 'disabled'; why: string; reason: ExitReason }
  | { type: 'removed' }
  | { type: 'capacity-free' }
  | { type: 'prepared'; attempt: number; mode: DeliveryMode; note: string | null }
  | { type: 'prepare-failed'; attempt: number; message: string; tokenRejected: boolean }
  | { type: 'forked'; attempt: number; pid: number }
  | { type: 'fork-failed'; attempt: number; message: string; config: boolean }
  | { type: 'ready'; pid: number }
  | { type: 'worker-error'; pid: number; message: string; code: ErrorCode | null }
  | { type: 'heartbeat-overdue'; pid: number }
  | { type: 'memory-over-cap'; pid: number }
  | { type: 'disk-over-cap'; pid: number; message: string }
  | { type: 'protocol-violation'; pid: number; detail: string }
  | { type: 'exit'; pid: number; code: number | null; signal: string | null; oom: boolean }
  | { type: 'timer' }
  | { type: 'restart'; reason: 'operator' | 'rolling-restart' }
  | { type: 'shutdown' }
  | { type: 'ownership-gained'; restored: RestoredHistory | null }
  | { type: 'ownership-lost'; owner: string };

/** How a child last ended. `at` is an ISO time. */
export interface LastExit {
  code: number | null;
  signal: string | null;
  reason: ExitReason;
  at: string;
  /** The catalog code of the worker's own fatal error (BF_ERR_BAD_TOKEN, BF_ERR_HANDLER_LOAD, BF_ERR_WORKER_FATAL), when it sent one. */
  errorCode?: ErrorCode;
}

/**
 * What a step asks the dispatcher to do. Times are ms on the supervisor's monotonic clock.
 * A change of tag clears the child's timer; `arm` sets the new one.
 */
export type Effect =
  | { type: 'prepare'; attempt: number }
  | { type: 'fork'; attempt: number }
  | { type: 'release-slot' }
  | { type: 'ask-drain'; pid: number; why: string }
  | { type: 'kill'; pid: number; reason: ExitReason | 'drain deadline' }
  | { type: 'arm'; at: number }
  | { type: 'save-history'; history: RestartHistory; quarantinedUntil: number | null; doNotRestart: boolean; reason: string | null }
  | { type: 'record-exit'; pid: number; exit: Omit<LastExit, 'at'> }
  | { type: 'deliver' }
  | { type: 'hold' }
  | { type: 'worker-gone'; suspects: boolean }
  | { type: 'send-settings' }
  | { type: 'forget' };

/** What a step needs besides the child, the event and the time: the rules and the room left. */
export interface StepRules {
  policy: RestartPolicy;
  /** The capacity (workers), for the reason shown when over it. */
  capacity: number;
  /** Whether this child may hold a worker slot now (it holds one, or one is free and the memory reserve allows a new worker). */
  slotFree: boolean;
  /** Why it may not when a slot is free: the memory reserve's reason (policy/memory-room.ts). */
  waitWhy?: string | null;
  /** The master is stopping: nothing launches. */
  shuttingDown: boolean;
  /** Who runs this bot instead of this master (another member of the cluster, or why none yet); null: this master may. Nothing launches while set. */
  owner: string | null;
  startupTimeoutMs: number;
  drainTimeoutMs: number;
}

/** The state a phase shows. */
export function stateOf(p: Phase): ChildState {
  switch (p.tag) {
    case 'waiting':
    case 'preparing':
      return 'pending';
    case 'forking':
      return 'starting';
    default:
      return p.tag;
  }
}

/** The reason a phase shows beside its state (`stateReason`). */
export function reasonOf(p: Phase): string | null {
  switch (p.tag) {
    case 'running':
      return null;
    case 'preparing':
      return `preparing Telegram's side (${p.why})`;
    default:
      return p.why;
  }
}

/** The live process of a phase, if it has one. */
export const procOf = (p: Phase): Proc | null => (p.tag === 'starting' || p.tag === 'running' || p.tag === 'draining' ? p.proc : null);

/** Whether a phase counts against the capacity cap: a process, a launch under way, or a restart armed. */
export const holdsSlot = (p: Phase): boolean => p.tag !== 'stopped' && p.tag !== 'waiting' && p.tag !== 'quarantined';

/** Whether the bot is meant to run (not stopped, not being stopped). */
export const meantToRun = (p: Phase): boolean => p.tag !== 'stopped' && !(p.tag === 'draining' && p.then !== 'restart');

/** A fresh lifecycle: stopped, never launched. */
export const newLife = (history: RestartHistory): Life => ({ phase: { tag: 'stopped', why: null }, history, needsPrepare: true, attempt: 0, restarts: 0, mode: null, note: null });

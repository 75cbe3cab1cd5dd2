/**
 * The exit truth table, pure: what happens when a child's process ends, from how it
 * ended x what the master meant for it x where it was, to the next state, the reason
 * recorded as `lastExit.reason`, and the restart decision (OTP's supervisor reads the
 * same way: exit cause x restart type -> action). No timers, no I/O: the supervisor
 * runs the effects. `test/golden/exit-table.json` holds every row, generated from
 * this function and checked in, so a change of behaviour shows as a diff.
 */
import { EXIT_CONFIG } from '../../worker/protocol.js';
import type { ChildState, ExitReason, Intent } from './child.js';
import { decideRestart, type RestartHistory, type RestartPolicy } from './policy/restart.js';

/** How a worker process ended (`code` null when a signal ended it). */
export interface ExitInfo {
  code: number | null;
  signal: string | null;
}

/** What the step needs to know of a child when its process ends. */
export interface ExitContext {
  state: ChildState;
  intent: Intent;
  /** The master is stopping: nothing restarts. */
  shuttingDown: boolean;
  /** Why the master ended this process, if it did (a kill for a fault, a stop, a restart). */
  endReason: ExitReason | null;
  history: RestartHistory;
  /** How long the process ran, ms. */
  ranMs: number;
  /** The worker's own last words (its `error` message), the quarantine reason for `config`. */
  fatalMessage: string | null;
  /** What it did to be killed with `protocol`. */
  protocolDetail: string | null;
}

/** An action for the supervisor to carry out. Times in ms on the supervisor's monotonic clock. */
export type ExitEffect =
  | { type: 'launch'; why: string }
  | { type: 'arm-restart'; delayMs: number; why: string }
  | { type: 'arm-quarantine-end'; until: number }
  | { type: 'save-history'; history: RestartHistory; quarantinedUntil: number | null; doNotRestart: boolean; reason?: string | null };

/** The step's result: the state to enter (with its reason), what to record, and what to do. */
export interface ExitStep {
  to: ChildState;
  stateReason: string | null;
  reason: ExitReason;
  /** A fault of a child meant to run. */
  fault: boolean;
  /** Whether the in-flight updates become suspects: a fault nobody explains ({@link SUSPECT_DEATHS}). */
  suspects: boolean;
  /** Counted in `restarts` (total). */
  countsAsRestart: boolean;
  intent: Intent;
  history: RestartHistory;
  quarantinedUntil: number | null | undefined;
  effects: ExitEffect[];
}

/**
 * The reason recorded for an exit: what the master ended it for, else from the
 * exit itself: 78 (EX_CONFIG) `config`, 0 unasked `exited`, anything else `crash`.
 */
export function exitReason(endReason: ExitReason | null, info: ExitInfo): ExitReason {
  if (endReason) return endReason;
  if (info.code === EXIT_CONFIG) return 'config';
  if (info.code === 0 && info.signal === null) return 'exited';
  return 'crash';
}

/** Reasons that are faults: they go through the restart policy. */
export const FAULTS: ReadonlySet<ExitReason> = new Set(['crash', 'exited', 'protocol', 'hung', 'memory', 'disk', 'startup-timeout', 'config']);

/**
 * Deaths an update may have caused: the updates then in flight become suspects, taken one
 * at a time by the next worker (delivery/poison.ts). A crash, an unasked exit, a protocol
 * violation, and, unlike DESIGN.md's first list, a hang and the memory cap too: a handler that
 * loops or balloons on one update would otherwise crash-loop its bot into quarantine, and
 * probation already keeps innocent updates out of the dead-letter queue. A death the master
 * causes for reasons of its own (a deploy, an operator, a shutdown, the data cap) makes none.
 */
export const SUSPECT_DEATHS: ReadonlySet<ExitReason> = new Set(['crash', 'exited', 'protocol', 'hung', 'memory']);

/** Faults no restart can fix: quarantined until an operator acts, no budget spent (a bad configuration; a data directory over its cap). */
export const DO_NOT_RESTART: ReadonlySet<ExitReason> = new Set(['config', 'disk']);

/**
 * One child's process ended. @param now monotonic ms; @param keepStateReason the
 * reason `stopped` keeps (why it was stopped).
 */
export function stepExit(c: ExitContext, info: ExitInfo, now: number, policy: RestartPolicy, keepStateReason: string | null): ExitStep {
  const reason = exitReason(c.endReason, info);
  const fault = c.intent === 'run' && !c.shuttingDown;
  const base = { reason, fault, suspects: fault && SUSPECT_DEATHS.has(reason), history: c.history, quarantinedUntil: undefined, intent: c.intent };
  if (c.intent === 'stop' || c.shuttingDown) {
    return { ...base, to: 'stopped', stateReason: keepStateReason, countsAsRestart: false, effects: [] };
  }
  if (c.intent === 'restart') {
    // `pending` until the fork: `starting` means forked (the launch moves it on, after any Telegram-side preparation).
    return { ...base, intent: 'run', to: 'pending', stateReason: `restarting (${reason})`, countsAsRestart: true, effects: [{ type: 'launch', why: reason }] };
  }
  return stepFault(c, reason, now, policy);
}

/** A fault of a child meant to run (or a failed start): restart per policy, or quarantine. */
export function stepFault(c: ExitContext, reason: ExitReason, now: number, policy: RestartPolicy, detail?: string): ExitStep {
  const { next, act } = decideRestart(c.history, policy, now, c.ranMs, DO_NOT_RESTART.has(reason));
  const why = reason === 'protocol' ? `protocol: ${c.protocolDetail ?? 'violation'}` : (detail ?? reason);
  const base = { reason, fault: true, suspects: SUSPECT_DEATHS.has(reason), intent: c.intent, history: next };
  if (act.action === 'quarantine') {
    const stateReason = c.fatalMessage ?? (reason === 'protocol' ? `${why}; ${act.why}` : detail ?? act.why);
    const effects: ExitEffect[] = [{ type: 'save-history', history: next, quarantinedUntil: act.until, doNotRestart: act.until === null, reason: act.until === null ? stateReason : null }];
    if (act.until !== null) effects.push({ type: 'arm-quarantine-end', until: act.until });
    return { ...base, to: 'quarantined', stateReason, countsAsRestart: false, quarantinedUntil: act.until, effects };
  }
  return {
    ...base, to: 'backoff', stateReason: `${why}; restart in ${act.delayMs} ms`, countsAsRestart: true, quarantinedUntil: undefined,
    effects: [{ type: 'save-history', history: next, quarantinedUntil: null, doNotRestart: false }, { type: 'arm-restart', delayMs: act.delayMs, why: `restart after ${reason}` }],
  };
}

/**
 * The lifecycle's one pure step: (child's life, event, now, rules) -> { next, effects }.
 * No timers, no I/O, no clock of its own: the dispatcher (dispatcher.ts) applies `next`
 * and carries out the effects. Read as OTP's supervisor reads: what happened x where the
 * child was -> where it goes and what the master does. `test/lifecycle-step.test.ts` is
 * its table, one row a line.
 */
import { EXIT_CONFIG } from '../../worker/protocol.js';
import { decideRestart, emptyHistory } from './policy/restart.js';
import { procOf, type AfterDrain, type Effect, type ExitInfo, type ExitReason, type Life, type LifeEvent, type Phase, type Proc, type RestoredHistory, type StepRules } from './phase.js';

/** A step's result: the life to enter and what to do. */
export interface Step { next: Life; effects: Effect[] }

/**
 * The reason recorded for an exit: what the master ended it for, else from the
 * exit itself: 78 (EX_CONFIG) `config`, 0 unasked `exited`, anything else `crash`.
 */
export function exitReason(killedFor: ExitReason | null, info: ExitInfo): ExitReason {
  if (killedFor) return killedFor;
  if (info.code === EXIT_CONFIG) return 'config';
  if (info.code === 0 && info.signal === null) return 'exited';
  return 'crash';
}

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

const same = (life: Life): Step => ({ next: life, effects: [] });
const to = (life: Life, phase: Phase, effects: Effect[] = [], patch: Partial<Life> = {}): Step => ({ next: { ...life, ...patch, phase }, effects });

/** One event for one child at `now` (monotonic ms). Pure: the input is not changed. */
export function step(life: Life, e: LifeEvent, now: number, r: StepRules): Step {
  const p = life.phase;
  switch (e.type) {
    case 'configured': return configured(life, e.restored, now, r);
    case 'changed': return changed(life, e.material, e.settings, now, r);
    case 'disabled': return stop(life, e.why, e.reason, 'stop', now, r);
    case 'removed': return stop(life, 'removed', 'operator', 'forget', now, r);
    case 'ownership-lost': return stop(life, `owned by ${e.owner}`, 'operator', 'stop', now, r);
    case 'shutdown': return p.tag === 'stopped' ? same(life) : stop(life, 'master shutting down', 'operator', 'stop', now, r);
    case 'ownership-gained':
      // Taken back while its worker still drains from the loss: it starts again once that worker is gone.
      if (p.tag === 'draining') return p.then === 'stop' ? to(life, { ...p, then: 'restart' }) : same(life);
      return configured(life, e.restored, now, r, 'ownership gained'); // a quarantine its history holds goes on
    case 'capacity-free': return p.tag === 'waiting' ? launch(life, 'capacity available', r) : same(life);
    case 'prepared':
      if (p.tag !== 'preparing' || p.attempt !== e.attempt) return same(life);
      return to(life, { tag: 'forking', attempt: p.attempt, why: p.why }, [{ type: 'fork', attempt: p.attempt }], { mode: e.mode, note: e.note, needsPrepare: false });
    case 'prepare-failed':
      if (p.tag !== 'preparing' || p.attempt !== e.attempt) return same(life);
      return fault(life, e.tokenRejected ? 'config' : 'crash', null, 0, now, r, e.message);
    case 'forked':
      if (p.tag !== 'forking' || p.attempt !== e.attempt) return { next: life, effects: [{ type: 'kill', pid: e.pid, reason: 'operator' }] };
      return to(life, { tag: 'starting', why: p.why, proc: { pid: e.pid, startedAt: now, killedFor: null, fatal: null, detail: null } }, [{ type: 'arm', at: now + r.startupTimeoutMs }]);
    case 'fork-failed':
      if (p.tag !== 'forking' || p.attempt !== e.attempt) return same(life);
      return fault(life, e.config ? 'config' : 'crash', null, 0, now, r, e.message);
    case 'ready':
      if (p.tag !== 'starting' || p.proc.pid !== e.pid) return same(life);
      return to(life, { tag: 'running', proc: p.proc }, [{ type: 'release-slot' }, { type: 'deliver' }]);
    case 'worker-error': return patchProc(life, e.pid, { fatal: { message: e.message, code: e.code } });
    case 'heartbeat-overdue': return p.tag === 'running' ? killFor(life, e.pid, 'hung', {}) : same(life);
    case 'memory-over-cap': return killFor(life, e.pid, 'memory', { killedFor: 'memory' });
    case 'disk-over-cap': return killFor(life, e.pid, 'disk', { killedFor: 'disk', fatal: { message: e.message, code: null } });
    case 'protocol-violation': return killFor(life, e.pid, 'protocol', { detail: e.detail, fatal: null });
    case 'exit': return exited(life, e, now, r);
    case 'timer': return timer(life, r);
    case 'restart': return restart(life, e.reason, now, r);
  }
}

/** Bring the child up for `why`: over capacity it waits; else Telegram's side first when needed, then a fork. */
function launch(life: Life, why: string, r: StepRules): Step {
  if (r.shuttingDown) return to(life, { tag: 'stopped', why: 'master shutting down' });
  if (r.owner !== null) return to(life, { tag: 'stopped', why: `owned by ${r.owner}` });
  if (!r.slotFree) return to(life, { tag: 'waiting', why: r.waitWhy ?? `over capacity (${r.capacity} workers)` });
  const attempt = life.attempt + 1;
  if (life.needsPrepare) return to(life, { tag: 'preparing', attempt, why }, [{ type: 'prepare', attempt }], { attempt });
  return to(life, { tag: 'forking', attempt, why }, [{ type: 'fork', attempt }], { attempt });
}

/** A bot seen for the first time, enabled: a quarantine an earlier master kept goes on where it was, else a launch. */
function configured(life: Life, restored: RestoredHistory | null, now: number, r: StepRules, why = 'configured'): Step {
  if (life.phase.tag !== 'stopped') return same(life);
  const l = restored ? { ...life, history: restored.history } : life;
  if (r.owner !== null) return launch(l, why, r); // another master's: its quarantine is its owner's to show
  if (restored?.doNotRestart) {
    return to(l, { tag: 'quarantined', until: null, why: `${restored.reason ?? 'do not restart (exit 78)'} (quarantined before the master restarted; restart it once fixed)` });
  }
  if (restored && restored.quarantinedUntil !== null && restored.quarantinedUntil > now) {
    return to(l, { tag: 'quarantined', until: restored.quarantinedUntil, why: 'quarantined before the master restarted (restart quota used up)' }, [{ type: 'arm', at: restored.quarantinedUntil }]);
  }
  return launch(l, why, r);
}

/** An enabled bot listed again: `material` (token, mode, handler, API root) restarts it, `settings` goes to a running worker. */
function changed(life: Life, material: boolean, settings: boolean, now: number, r: StepRules): Step {
  const l = material ? { ...life, needsPrepare: true } : life;
  const p = l.phase;
  switch (p.tag) {
    case 'stopped': return launch(l, 'enabled', r);
    case 'quarantined': return material ? fresh(l, 'configuration changed', r) : same(l);
    case 'preparing':
    case 'forking': return material ? launch(l, 'configuration changed', r) : same(l);
    case 'starting':
    case 'running':
      if (material) return drain(l, p.proc, p.tag, 'restart', 'configuration changed', 'config-change', now, r);
      return p.tag === 'running' && settings ? { next: l, effects: [{ type: 'send-settings' }] } : same(l);
    case 'draining': return p.then === 'restart' ? same(l) : to(l, { ...p, then: 'restart' });
    default: return same(l);
  }
}

/** A fresh start: the restart history and quarantine forgotten (in the store too), then a launch. */
function fresh(life: Life, why: string, r: StepRules): Step {
  const history = emptyHistory();
  const s = launch({ ...life, history }, why, r);
  return { next: s.next, effects: [{ type: 'save-history', history, quarantinedUntil: null, doNotRestart: false, reason: null }, ...s.effects] };
}

/** Stop the child (`then` says what follows the drain of a live worker): ask, and arm the deadline. */
function stop(life: Life, why: string, reason: ExitReason, then: AfterDrain, now: number, r: StepRules): Step {
  const p = life.phase;
  const forget: Effect[] = then === 'forget' ? [{ type: 'forget' }] : [];
  switch (p.tag) {
    case 'starting':
    case 'running': return drain(life, p.proc, p.tag, then, why, reason, now, r);
    case 'draining': return to(life, { ...p, then: p.then === 'forget' ? 'forget' : then, why });
    default: return to(life, { tag: 'stopped', why }, forget);
  }
}

/** Ask a live worker to drain and exit; SIGKILL at the deadline (WORKER_TIMEOUT_MS). */
function drain(life: Life, proc: Proc, from: 'starting' | 'running', then: AfterDrain, why: string, reason: ExitReason, now: number, r: StepRules): Step {
  const effects: Effect[] = [...(from === 'running' ? [{ type: 'hold' } as const] : []), { type: 'ask-drain', pid: proc.pid, why }, { type: 'arm', at: now + r.drainTimeoutMs }];
  return to(life, { tag: 'draining', proc: { ...proc, killedFor: proc.killedFor ?? reason }, then, why, killed: false }, effects);
}

/** An operator's or a rolling restart: a live worker drains and comes back; a child without one starts afresh. */
function restart(life: Life, reason: 'operator' | 'rolling-restart', now: number, r: StepRules): Step {
  const p = life.phase;
  switch (p.tag) {
    case 'starting':
    case 'running': return drain(life, p.proc, p.tag, 'restart', reason, reason, now, r);
    case 'draining': return p.then === 'forget' ? same(life) : to(life, { ...p, then: 'restart' });
    case 'waiting':
    case 'backoff':
    case 'quarantined': return fresh(life, reason, r);
    default: return same(life);
  }
}

/** Change the live process `pid`'s facts (nothing when it is not the current one). */
function patchProc(life: Life, pid: number, patch: Partial<Proc>): Step {
  const p = life.phase;
  const proc = procOf(p);
  if (!proc || proc.pid !== pid) return same(life);
  return to(life, { ...p, proc: { ...proc, ...patch } } as Phase);
}

/** The master ends process `pid` for `reason` (SIGKILL to its group); a reason already recorded stays unless `patch` overrides it. */
function killFor(life: Life, pid: number, reason: ExitReason, patch: Partial<Proc>): Step {
  const proc = procOf(life.phase);
  if (!proc || proc.pid !== pid) return same(life);
  const already = patch.killedFor !== undefined ? proc.killedFor === patch.killedFor : proc.killedFor !== null && life.phase.tag !== 'draining';
  if (already) return same(life);
  const s = patchProc(life, pid, { killedFor: proc.killedFor ?? reason, ...patch });
  return { next: s.next, effects: [{ type: 'kill', pid, reason }] };
}

/** The child's one timer fired: the startup or drain deadline, the end of a backoff or of a quarantine. */
function timer(life: Life, r: StepRules): Step {
  const p = life.phase;
  switch (p.tag) {
    case 'starting': return killFor(life, p.proc.pid, 'startup-timeout', {});
    case 'draining': return p.killed ? same(life) : to(life, { ...p, killed: true }, [{ type: 'kill', pid: p.proc.pid, reason: 'drain deadline' }]);
    case 'backoff': return launch(life, `restart after ${p.cause}`, r);
    case 'quarantined': return p.until === null ? same(life) : launch(life, 'quarantine window freed', r);
    default: return same(life);
  }
}

/** The worker process ended: record it, tell delivery, then stop, restart, or go through the restart policy. */
function exited(life: Life, e: Extract<LifeEvent, { type: 'exit' }>, now: number, r: StepRules): Step {
  const p = life.phase;
  const proc = procOf(p);
  if (!proc || proc.pid !== e.pid) return same(life);
  const reason = e.oom ? 'memory' : exitReason(proc.killedFor, e);
  const isFault = p.tag !== 'draining' && !r.shuttingDown;
  const done: Effect[] = [
    { type: 'release-slot' }, ...(p.tag === 'running' ? [{ type: 'hold' } as const] : []),
    { type: 'worker-gone', suspects: isFault && SUSPECT_DEATHS.has(reason) },
    { type: 'record-exit', pid: e.pid, exit: { code: e.code, signal: e.signal, reason, ...(proc.fatal?.code ? { errorCode: proc.fatal.code } : {}) } },
  ];
  let s: Step;
  if (p.tag === 'draining' && p.then === 'restart') s = launch({ ...life, restarts: life.restarts + 1 }, `restarting (${reason})`, r);
  else if (p.tag === 'draining' || !isFault) s = to(life, { tag: 'stopped', why: p.tag === 'draining' ? p.why : 'master shutting down' }, p.tag === 'draining' && p.then === 'forget' ? [{ type: 'forget' }] : []);
  else s = fault(life, reason, proc, now - proc.startedAt, now, r);
  return { next: s.next, effects: [...done, ...s.effects] };
}

/** A fault of a child meant to run (or a failed start): restart per policy after a backoff, or quarantine. */
function fault(life: Life, reason: ExitReason, proc: Proc | null, ranMs: number, now: number, r: StepRules, detail?: string): Step {
  const { next: history, act } = decideRestart(life.history, r.policy, now, ranMs, DO_NOT_RESTART.has(reason));
  const why = reason === 'protocol' ? `protocol: ${proc?.detail ?? 'violation'}` : (detail ?? reason);
  if (act.action === 'quarantine') {
    const shown = proc?.fatal?.message ?? (reason === 'protocol' ? `${why}; ${act.why}` : detail ?? act.why);
    const effects: Effect[] = [{ type: 'save-history', history, quarantinedUntil: act.until, doNotRestart: act.until === null, reason: act.until === null ? shown : null }];
    if (act.until !== null) effects.push({ type: 'arm', at: act.until });
    return to(life, { tag: 'quarantined', until: act.until, why: shown }, effects, { history });
  }
  const at = now + act.delayMs;
  return to(life, { tag: 'backoff', until: at, why: `${why}; restart in ${act.delayMs} ms`, cause: reason }, [
    { type: 'save-history', history, quarantinedUntil: null, doNotRestart: false, reason: null }, { type: 'arm', at },
  ], { history, restarts: life.restarts + 1 });
}

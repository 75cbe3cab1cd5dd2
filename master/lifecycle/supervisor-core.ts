/**
 * The supervisor's state and its one place of change: the children map, `transition()`,
 * the capacity fill, and carrying out what the pure exit step decides (master/lifecycle/step.ts).
 * Launching (launch.ts), the worker's messages (worker-messages.ts) and reconciling with
 * the registry (reconcile.ts) work on this core; supervisor.ts wires it to the outside.
 */
import type { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { assertNever } from '../../common/errors.js';
import { effectiveCapacity, type Config } from '../../config/load.js';
import type { DeliveryMode } from '../../worker/protocol.js';
import { ALLOWED_TRANSITIONS, keepRecent, type Child, type ChildState, type ExitReason } from './child.js';
import type { BotSpec } from './child-spec.js';
import type { ExitInfo, WorkerProcess } from './child-process.js';
import type { Clock } from './clock.js';
import { createForkPacer } from './fork-pacer.js';
import { createLimiter } from './policy/limiter.js';
import { emptyHistory, type RestartPolicy } from './policy/restart.js';
import { stepExit, stepFault, type ExitContext, type ExitStep } from './step.js';
import type { DeliveryRequest } from './telegram-admin.js';
import { onWorkerGone } from '../delivery/outbox.js';
import type { RestoredHistory, SupervisorDeps, TransitionEvent } from './supervisor-deps.js';

export const HOUR_MS = 3_600_000;
/** Bot API calls (setWebhook/deleteWebhook) in flight at once while starting bots. */
const PREPARE_CONCURRENCY = 4;
/**
 * The live-worker record (run/workers.json: a file write, a rename and a /proc read,
 * ~1 ms on these disks) is written at once when nothing was written in the last
 * PID_RECORD_EVERY_MS, else once at the end of that window with every change in it.
 * During a fleet start it was ~19% of the master's CPU, written after every fork.
 * A worker forked in the window and not yet recorded still exits on its own when a
 * dead master closes its IPC channel.
 */
const PID_RECORD_EVERY_MS = 250;

/** One supervisor's children and the operations every part of the lifecycle shares. */
export class SupervisorCore {
  readonly cfg: Config;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly now: () => number;
  readonly children = new Map<string, Child>();
  /** Forks in flight (START_CONCURRENCY), paced (fork-pacer.ts). */
  readonly limiter;
  readonly pacer = createForkPacer();
  /** A fleet start would otherwise fire every bot's setWebhook/deleteWebhook in one tick: a burst for the loop and for Telegram. */
  readonly preparing = createLimiter(PREPARE_CONCURRENCY);
  readonly cap: number;
  readonly policy: RestartPolicy;
  shuttingDown = false;
  /** Set once stopAll() has finished: nothing is reported after that. */
  stopped = false;
  private fillQueued = false;
  private pidsTimer: ReturnType<Clock['setTimeout']> | null = null;
  private pidsWrittenAt = -Infinity;

  /** `launcher` brings a child up (launch.ts's launchChild, given by supervisor.ts so this module does not import it). */
  constructor(readonly d: SupervisorDeps, readonly events: EventEmitter, clock: Clock, private readonly launcher: (c: Child, why: string) => Promise<void>) {
    this.cfg = d.config;
    this.logger = d.logger;
    this.clock = clock;
    this.now = d.now ?? (() => clock.now());
    this.limiter = createLimiter(this.cfg.startConcurrency);
    this.cap = effectiveCapacity(this.cfg, d.cores);
    this.policy = { maxRestarts: this.cfg.maxRestartsPerHour, periodMs: HOUR_MS, baseMs: this.cfg.restartBackoffMs, capMs: this.cfg.restartCooldownMs, healthyRunMs: this.cfg.healthyRunMs };
  }

  /** A monotonic time as wall-clock ms, for what is shown (ISO times in status). */
  wall(mono: number): number {
    return Date.now() - (this.now() - mono);
  }

  /** The only place a child's state changes; a pair outside ALLOWED_TRANSITIONS is refused and logged. */
  transition(c: Child, to: ChildState, reason: string | null): void {
    const from = c.state;
    if (!ALLOWED_TRANSITIONS[from].includes(to)) {
      this.logger.error({ botId: c.botId, from, to, reason }, 'refused transition (supervisor bug)');
      return;
    }
    c.state = to;
    c.stateReason = reason;
    keepRecent(c.transitions, { from, to, reason, at: new Date().toISOString() });
    this.logger.info({ botId: c.botId, from, to, reason }, 'transition');
    this.events.emit('transition', { botId: c.botId, from, to, reason } satisfies TransitionEvent);
    if (to === 'running' && c.proc) this.d.journal?.attach(c.botId, c.proc);
    else if (from === 'running') this.d.journal?.pause(c.botId);
    if ((to === 'stopped' || to === 'quarantined' || to === 'pending') && !this.fillQueued) {
      this.fillQueued = true;
      queueMicrotask(() => this.fillCapacity());
    }
  }

  clearTimer(c: Child): void {
    if (c.timer) this.clock.clearTimeout(c.timer);
    c.timer = null;
  }

  /** Whether `c` counts against the capacity cap (a process, a fork under way, or a restart armed). */
  holdsSlot(c: Child): boolean {
    return c.proc !== null || c.launching || c.state === 'backoff';
  }

  used(): number {
    let n = 0;
    for (const c of this.children.values()) if (this.holdsSlot(c)) n++;
    return n;
  }

  /**
   * Launch pending children while capacity allows. One fill per microtask however many
   * transitions asked for it; `used()` is counted once per fill (a scan of every child
   * per candidate would be quadratic in a large fleet).
   */
  private fillCapacity(): void {
    this.fillQueued = false;
    if (this.shuttingDown) return;
    let free = this.cap - this.used();
    for (const c of this.children.values()) {
      if (free <= 0) return;
      if (c.state === 'pending' && c.intent === 'run') {
        free--;
        void this.launch(c, 'capacity available');
      }
    }
  }

  /** Prepare Telegram's side and fork `c`'s worker (launch.ts). Never throws. */
  launch(c: Child, why: string): Promise<void> {
    return this.launcher(c, why);
  }

  deliveryRequest(c: Child, spec: BotSpec, mode: DeliveryMode): DeliveryRequest {
    const { cfg } = this;
    return {
      botId: c.botId, token: spec.token, apiRoot: spec.apiRoot ?? cfg.telegramApiRoot, mode,
      webhookHost: cfg.webhookHost, secretToken: this.d.secretTokenFor(c.botId), autoSwitch: cfg.autoSwitchMode,
    };
  }

  /** The master ends the process: SIGKILL to its group, `reason` recorded. */
  kill(c: Child, reason: ExitReason): void {
    if (!c.proc) return;
    c.endReason ??= reason;
    this.logger.warn({ botId: c.botId, workerPid: c.proc.pid, reason }, 'killing worker');
    c.proc.kill('SIGKILL');
  }

  /** The worker broke the protocol or its limits: killed with reason `protocol` (a fault: backoff, quota, quarantine). */
  protocolViolation(c: Child, proc: WorkerProcess, why: string): void {
    if (c.proc !== proc) return;
    c.fatalMessage = null;
    c.fatalCode = null;
    c.protocolDetail = why;
    this.logger.warn({ botId: c.botId, workerPid: proc.pid, why }, 'protocol violation: killing worker');
    this.kill(c, 'protocol');
  }

  /** A worker's process ended: end its group, tell delivery, record the exit, and apply the exit step. */
  onExit(c: Child, proc: WorkerProcess, info: ExitInfo): void {
    if (c.proc !== proc) return;
    this.clearTimer(c);
    c.releaseSlot?.();
    Object.assign(c, { proc: null, releaseSlot: null, queueDepth: 0 });
    this.reportPids();
    // Whatever the worker left in its process group dies with it (a graceful exit left them before).
    // The group id cannot be reused while a member lives, so this never hits a stranger.
    try {
      process.kill(-proc.pid, 'SIGKILL');
    } catch {
      // the group is empty
    }
    const cause = this.d.onWorkerExit?.(c.botId, proc.pid);
    if (cause) c.endReason = cause; // the kernel's OOM killer: a SIGKILL the master did not send, whatever it meant to do
    const st = stepExit(this.exitContext(c), info, this.now(), this.policy, c.stateReason);
    const inFlight = c.delivery.inFlight.size;
    onWorkerGone(c.delivery, st.suspects);
    this.d.journal?.workerGone(c.botId, st.suspects);
    c.lastExit = { code: info.code, signal: info.signal, reason: st.reason, at: new Date().toISOString(), ...(c.fatalCode ? { errorCode: c.fatalCode } : {}) };
    c.exitsByReason[st.reason] = (c.exitsByReason[st.reason] ?? 0) + 1;
    keepRecent(c.exits, c.lastExit);
    this.logger[c.intent === 'run' ? 'warn' : 'info']({ botId: c.botId, workerPid: proc.pid, ...info, reason: st.reason, inFlight, suspects: c.delivery.poison.suspects.size }, 'worker exited');
    this.apply(c, st);
  }

  /** What the pure step needs of a child. */
  private exitContext(c: Child): ExitContext {
    return {
      state: c.state, intent: c.intent, shuttingDown: this.shuttingDown, endReason: c.endReason, history: c.history,
      ranMs: c.startedAt === null ? 0 : this.now() - c.startedAt, fatalMessage: c.fatalMessage, protocolDetail: c.protocolDetail,
    };
  }

  /** Carry out a step: the one state change, then its effects. */
  private apply(c: Child, st: ExitStep): void {
    c.intent = st.intent;
    c.history = st.history;
    if (st.quarantinedUntil !== undefined) c.quarantinedUntil = st.quarantinedUntil;
    if (st.countsAsRestart) c.restartsTotal++;
    this.transition(c, st.to, st.stateReason);
    for (const e of st.effects) {
      switch (e.type) {
        case 'launch':
          void this.launch(c, e.why);
          break;
        case 'arm-restart':
          c.timer = this.clock.setTimeout(() => void this.launch(c, e.why), e.delayMs);
          break;
        case 'arm-quarantine-end':
          this.armQuarantineEnd(c, e.until);
          break;
        case 'save-history':
          this.d.onHistory?.(c.botId, e.history, e.quarantinedUntil, e.doNotRestart, e.reason ?? null);
          break;
        default:
          assertNever(e);
      }
    }
  }

  /** A child failed before or at its start (prepare or fork failed): restart per policy or quarantine. */
  afterFault(c: Child, reason: ExitReason, detail?: string): void {
    this.apply(c, stepFault(this.exitContext(c), reason, this.now(), this.policy, detail));
  }

  private armQuarantineEnd(c: Child, until: number): void {
    c.timer = this.clock.setTimeout(() => {
      c.quarantinedUntil = null;
      if (c.intent === 'run' && c.state === 'quarantined') void this.launch(c, 'quarantine window freed');
    }, Math.max(0, until - this.now()));
  }

  /** A quarantine from before the master restarted (kept in the registry) goes on where it was. */
  restoreQuarantine(c: Child, r: RestoredHistory): void {
    c.quarantinedUntil = r.doNotRestart ? null : r.quarantinedUntil;
    this.transition(c, 'quarantined', r.doNotRestart ? `${r.reason ?? 'do not restart (exit 78)'} (quarantined before the master restarted; restart it once fixed)` : 'quarantined before the master restarted (restart quota used up)');
    if (c.quarantinedUntil !== null) this.armQuarantineEnd(c, c.quarantinedUntil);
  }

  /** Forget `c`'s restart history and quarantine (an operator's restart, a fixed configuration), in the registry too. */
  freshStart(c: Child): void {
    this.clearTimer(c);
    c.history = emptyHistory();
    c.quarantinedUntil = null;
    this.d.onHistory?.(c.botId, c.history, null, false);
  }

  /** Restart one enabled bot: drain and relaunch a live worker, else launch with a fresh history. */
  async restartOne(c: Child, reason: ExitReason): Promise<void> {
    if (!c.spec?.enabled) return;
    if (c.proc) {
      await this.stopProc(c, reason, 'restart', reason);
      return;
    }
    c.intent = 'run';
    this.freshStart(c);
    await this.launch(c, reason);
  }

  /**
   * Ask the worker to drain and exit; SIGKILL at the deadline (WORKER_TIMEOUT_MS).
   * `intent` says what follows: `stop`, an immediate `restart`, or `run` (a fault: the restart policy decides).
   * @returns once it has exited: whether it had to be killed
   */
  async stopProc(c: Child, reason: ExitReason, intent: 'stop' | 'restart' | 'run', why: string): Promise<boolean> {
    c.intent = intent;
    this.clearTimer(c);
    const proc = c.proc;
    if (!proc) {
      if (intent === 'stop' && c.state !== 'stopped') this.transition(c, 'stopped', why);
      return false;
    }
    c.endReason ??= reason;
    this.transition(c, 'draining', why);
    try {
      proc.send({ v: 1, type: 'shutdown', reason: why });
    } catch {
      proc.kill('SIGKILL');
    }
    let killed = false;
    const deadline = this.clock.setTimeout(() => {
      killed = true;
      this.logger.warn({ botId: c.botId, workerPid: proc.pid, deadlineMs: this.cfg.workerTimeoutMs }, 'drain deadline passed, SIGKILL');
      proc.kill('SIGKILL');
    }, this.cfg.workerTimeoutMs);
    await proc.exited;
    this.clock.clearTimeout(deadline);
    return killed;
  }

  /** Record the live workers (onPids), throttled to PID_RECORD_EVERY_MS: a leading write when idle, one trailing write for a burst. */
  reportPids(): void {
    const onPids = this.d.onPids;
    if (!onPids || this.pidsTimer || this.stopped) return;
    const wait = Math.max(0, this.pidsWrittenAt + PID_RECORD_EVERY_MS - this.now());
    this.pidsTimer = this.clock.setTimeout(() => {
      this.pidsTimer = null;
      if (this.stopped) return;
      this.pidsWrittenAt = this.now();
      onPids([...this.children.values()].filter((c) => c.proc).map((c) => ({ pid: c.proc!.pid, botId: c.botId })));
    }, wait);
  }

  /** After a clean stop nothing more is recorded (the master removes the record). */
  endPidRecord(): void {
    this.stopped = true;
    if (this.pidsTimer) this.clock.clearTimeout(this.pidsTimer);
  }
}

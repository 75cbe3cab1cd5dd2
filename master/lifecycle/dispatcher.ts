/**
 * The dispatcher: the only code that changes a child's lifecycle. Every event goes
 * through the pure `step` (step.ts); the dispatcher applies its `next` (with what it
 * shows: `state`, `stateReason`, the transition event and log) and carries out its
 * effects through the supervisor's ports: fork and Telegram's side (launch.ts), signals,
 * the one timer per child, the restart history, the delivery wing, forgetting a bot.
 * It also keeps the capacity count and fills free slots with waiting children.
 */
import type { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { assertNever } from '../../common/errors.js';
import { effectiveCapacity, type Config } from '../../config/load.js';
import type { DeliveryMode } from '../../worker/protocol.js';
import { ALLOWED_TRANSITIONS, keepRecent, type Child } from './child.js';
import type { BotSpec } from '../../config/bot-spec.js';
import type { WorkerProcess } from './child-process.js';
import type { Clock, Timer } from './clock.js';
import { createForkPacer } from './fork-pacer.js';
import { holdsSlot, procOf, reasonOf, stateOf, type Effect, type LifeEvent, type StepRules } from './phase.js';
import { createLimiter } from './policy/limiter.js';
import { createMemoryRoom, ROOM_RECHECK_MS, type MemoryRoom } from './policy/memory-room.js';
import type { RestartPolicy } from './policy/restart.js';
import { step } from './step.js';
import type { DeliveryRequest } from './telegram-admin.js';
import { onWorkerGone } from '../delivery/in-flight.js';
import type { ChannelSinks } from '../delivery/worker-channel.js';
import type { SupervisorDeps, TransitionEvent } from './supervisor-deps.js';

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

/** The I/O behind the `prepare` and `fork` effects (launch.ts); each reports back with events. */
export interface Launcher {
  prepare(c: Child, attempt: number): Promise<void>;
  fork(c: Child, attempt: number): Promise<void>;
}

/** One supervisor's children, their one place of change, and the shared means of launching. */
export class Dispatcher {
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
  /** Bots SIGKILLed at their drain deadline (stopAll reports them). */
  readonly killedAtDeadline = new Set<string>();
  /** Where the workers' delivery frames go (made once: every ack passes here). */
  readonly channelSinks: ChannelSinks;
  /** Fork slots held by forked workers until `ready` or exit. */
  readonly forkSlots = new Map<Child, () => void>();
  /**
   * Spawns under way, and the exits of workers forked for a launch abandoned meanwhile, by
   * child: stopAll and a lost ownership wait for them (no worker outlives the master or runs
   * after its bot went to another member).
   */
  readonly underWay = new Set<{ c: Child; settled: Promise<void> }>();

  /** Until nothing is under way for `c` (every child when `c` is undefined). */
  async settled(c?: Child): Promise<void> {
    for (;;) {
      const mine = [...this.underWay].filter((u) => c === undefined || u.c === c);
      if (mine.length === 0) return;
      await Promise.all(mine.map((u) => u.settled));
    }
  }
  private held = 0;
  private readonly waiting = new Set<Child>();
  private readonly timers = new Map<Child, { handle: Timer; gen: number }>();
  private timerGen = 0;
  private fillQueued = false;
  private readonly room: MemoryRoom;
  private roomTimer: Timer | null = null;
  private pidsTimer: Timer | null = null;
  private pidsWrittenAt = -Infinity;
  private launcher!: Launcher;

  constructor(readonly d: SupervisorDeps, readonly events: EventEmitter, clock: Clock) {
    this.cfg = d.config;
    this.logger = d.logger;
    this.clock = clock;
    this.now = d.now ?? (() => clock.now());
    this.limiter = createLimiter(this.cfg.startConcurrency);
    this.cap = effectiveCapacity(this.cfg, d.cores);
    this.room = createMemoryRoom(this.cfg.memoryReserveMb * 1024 * 1024, d.availableMemory);
    this.channelSinks = { logger: this.logger, now: this.now, ...(d.journal ? { journal: d.journal } : {}), ...(d.onDeadLetter ? { onDeadLetter: d.onDeadLetter } : {}) };
    this.policy = { maxRestarts: this.cfg.maxRestartsPerHour, periodMs: HOUR_MS, baseMs: this.cfg.restartBackoffMs, capMs: this.cfg.restartCooldownMs, healthyRunMs: this.cfg.healthyRunMs };
  }

  /** Join the launcher (launch.ts), which needs this dispatcher itself. */
  useLauncher(l: Launcher): void {
    this.launcher = l;
  }

  /** A monotonic time as wall-clock ms, for what is shown (ISO times in status). */
  wall(mono: number): number {
    return Date.now() - (this.now() - mono);
  }

  private rules(c: Child): StepRules {
    const { cfg } = this;
    const holds = holdsSlot(c.life.phase);
    // A worker replacing its own (a restart) needs no new room; a new one must leave the memory reserve.
    const noRoom = holds || this.held >= this.cap ? null : this.room.why(this.forkSlots.size, this.now());
    return {
      policy: this.policy, capacity: this.cap, slotFree: holds || (this.held < this.cap && noRoom === null), waitWhy: noRoom, shuttingDown: this.shuttingDown, owner: this.d.ownerOf?.(c.botId) ?? null,
      startupTimeoutMs: cfg.startupTimeoutMs, drainTimeoutMs: cfg.workerTimeoutMs,
    };
  }

  /**
   * The one place a child's lifecycle changes: `e` through the step, `next` applied, effects
   * carried out in order. `worker` is the process a `forked` event names. Never throws.
   */
  dispatch(c: Child, e: LifeEvent, worker?: WorkerProcess): void {
    const before = c.life;
    const { next, effects } = step(before, e, this.now(), this.rules(c));
    if (next === before && effects.length === 0) return;
    c.life = next;
    if (next.phase.tag !== before.phase.tag) this.clearTimer(c);
    if (e.type === 'forked' && next.phase.tag === 'starting' && worker) {
      c.proc = worker;
      this.reportPids();
    }
    this.count(c, holdsSlot(before.phase), holdsSlot(next.phase));
    this.show(c);
    for (const effect of effects) this.carryOut(c, effect, worker);
    if (c.proc && !('proc' in next.phase)) {
      c.proc = null;
      c.queueDepth = 0;
      this.reportPids();
    }
  }

  /** Slot accounting and the waiting list; a slot freed or a child waiting asks for one fill per microtask. */
  private count(c: Child, had: boolean, has: boolean): void {
    if (had !== has) this.held += has ? 1 : -1;
    if (c.life.phase.tag === 'waiting') this.waiting.add(c);
    else this.waiting.delete(c);
    if ((had && !has) || c.life.phase.tag === 'waiting') this.queueFill();
  }

  /** `state` and `stateReason` from the phase; a change of state is logged, kept and emitted. */
  private show(c: Child): void {
    const from = c.state;
    const to = stateOf(c.life.phase);
    const reason = reasonOf(c.life.phase);
    c.stateReason = reason;
    if (from === to) return;
    if (!ALLOWED_TRANSITIONS[from].includes(to)) this.logger.error({ botId: c.botId, from, to, reason }, 'unexpected transition (supervisor bug)');
    c.state = to;
    keepRecent(c.transitions, { from, to, reason, at: new Date().toISOString() });
    this.logger.info({ botId: c.botId, from, to, reason }, 'transition');
    this.events.emit('transition', { botId: c.botId, from, to, reason } satisfies TransitionEvent);
  }

  /** `worker`: the process of a `forked` event, for a kill of a stale attempt's worker. */
  private carryOut(c: Child, e: Effect, worker?: WorkerProcess): void {
    const { d } = this;
    switch (e.type) {
      case 'prepare': return void this.launcher.prepare(c, e.attempt);
      case 'fork': return void this.launcher.fork(c, e.attempt);
      case 'release-slot':
        this.forkSlots.get(c)?.();
        return void this.forkSlots.delete(c);
      case 'ask-drain': return this.askDrain(c, e.pid, e.why);
      case 'kill': return this.kill(c, e.pid, e.reason, worker);
      case 'arm': return this.arm(c, e.at);
      case 'save-history': return d.onHistory?.(c.botId, e.history, e.quarantinedUntil, e.doNotRestart, e.reason);
      case 'record-exit': return this.recordExit(c, e);
      case 'deliver': return void (c.proc && d.journal?.attach(c.botId, c.proc));
      case 'hold': return d.journal?.pause(c.botId);
      case 'worker-gone':
        onWorkerGone(c.delivery, e.suspects);
        return d.journal?.workerGone(c.botId, e.suspects);
      case 'send-settings': return this.sendSettings(c);
      case 'forget': return this.forget(c);
      default: assertNever(e);
    }
  }

  private askDrain(c: Child, pid: number, why: string): void {
    if (c.proc?.pid !== pid) return;
    try {
      c.proc.send({ v: 1, type: 'shutdown', reason: why });
    } catch {
      c.proc.kill('SIGKILL');
    }
  }

  private kill(c: Child, pid: number, reason: string, stray?: WorkerProcess): void {
    const proc = c.proc?.pid === pid ? c.proc : stray?.pid === pid ? stray : null;
    if (reason === 'drain deadline') {
      this.killedAtDeadline.add(c.botId);
      this.logger.warn({ botId: c.botId, workerPid: pid, deadlineMs: this.cfg.workerTimeoutMs }, 'drain deadline passed, SIGKILL');
    } else if (reason === 'protocol') {
      this.logger.warn({ botId: c.botId, workerPid: pid, why: procOf(c.life.phase)?.detail }, 'protocol violation: killing worker');
    } else this.logger.warn({ botId: c.botId, workerPid: pid, reason }, 'killing worker');
    if (proc) proc.kill('SIGKILL');
    else {
      try {
        process.kill(-pid, 'SIGKILL'); // a process forked for an abandoned launch
      } catch {
        // already gone
      }
    }
  }

  private recordExit(c: Child, e: Extract<Effect, { type: 'record-exit' }>): void {
    const lastExit = { ...e.exit, at: new Date().toISOString() };
    c.lastExit = lastExit;
    c.exitsByReason[lastExit.reason] = (c.exitsByReason[lastExit.reason] ?? 0) + 1;
    keepRecent(c.exits, lastExit);
    const fault = c.life.phase.tag === 'backoff' || c.life.phase.tag === 'quarantined';
    this.logger[fault ? 'warn' : 'info']({ botId: c.botId, workerPid: e.pid, code: e.exit.code, signal: e.exit.signal, reason: lastExit.reason, suspects: c.delivery.poison.suspects.size }, 'worker exited');
  }

  private sendSettings(c: Child): void {
    try {
      c.proc?.send({ v: 1, type: 'settings', settings: c.spec?.settings ?? {} });
      this.logger.info({ botId: c.botId }, 'settings sent to worker (hot reload)');
    } catch (err) {
      this.logger.warn({ botId: c.botId, err: (err as Error).message }, 'could not send settings');
    }
  }

  private forget(c: Child): void {
    if (this.children.get(c.botId) !== c) return;
    this.children.delete(c.botId);
    this.waiting.delete(c);
    void c.log?.close();
    this.d.onRemoved?.(c.botId);
  }

  /** The child's one timer at `at` (replacing any); it fires as a `timer` event, a startup deadline one loop turn late. */
  private arm(c: Child, at: number): void {
    this.clearTimer(c);
    const gen = ++this.timerGen;
    const fire = () => {
      if (this.timers.get(c)?.gen !== gen) return;
      this.timers.delete(c);
      this.dispatch(c, { type: 'timer' });
    };
    // After a pause of the master, expired timers run before pending pipe data is read: a `ready` already sent must be seen first.
    const handle = this.clock.setTimeout(() => (c.life.phase.tag === 'starting' ? setImmediate(fire) : fire()), Math.max(0, at - this.now()));
    this.timers.set(c, { handle, gen });
  }

  private clearTimer(c: Child): void {
    const t = this.timers.get(c);
    if (!t) return;
    this.clock.clearTimeout(t.handle);
    this.timers.delete(c);
  }

  private queueFill(): void {
    if (this.fillQueued) return;
    this.fillQueued = true;
    queueMicrotask(() => {
      this.fillQueued = false;
      for (const c of this.waiting) {
        if (this.held >= this.cap || this.shuttingDown) return;
        if (this.room.why(this.forkSlots.size, this.now()) !== null) return void (this.roomTimer ??= this.clock.setTimeout(() => ((this.roomTimer = null), this.queueFill()), ROOM_RECHECK_MS));
        this.dispatch(c, { type: 'capacity-free' });
      }
    });
  }

  deliveryRequest(c: Child, spec: BotSpec, mode: DeliveryMode): DeliveryRequest {
    const { cfg } = this;
    return {
      botId: c.botId, token: spec.token, apiRoot: spec.apiRoot ?? cfg.telegramApiRoot, mode,
      webhookHost: cfg.webhookHost, secretToken: this.d.secretTokenFor(c.botId), autoSwitch: cfg.autoSwitchMode,
    };
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

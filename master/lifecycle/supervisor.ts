/**
 * The supervisor: the one owner of the children map. It forks one worker per
 * enabled bot (bounded start concurrency, capacity cap), moves each child
 * through the lifecycle with exactly one `transition()`, restarts on exit per
 * the restart policy, detects hung children by heartbeat deadline, tells the
 * delivery wing (the journal) when a bot's worker can take updates and what it
 * acked, and stops children the OTP way: ask, wait the deadline, kill (the whole
 * process group).
 */
import { EventEmitter } from 'node:events';
import type { Update } from 'node-telegram-bot-api';
import type { Logger } from 'pino';
import { ErrorCodes, errorMessage, fail } from '../../common/errors.js';
import { effectiveCapacity, type Config } from '../../config/load.js';
import { botApiPolicy, parseWorkerMessage, type DeliveryMode } from '../../worker/protocol.js';
import { ALLOWED_TRANSITIONS, childStatus, newChild, type Child, type ChildState, type ExitReason, type WorkerStatus } from './child.js';
import { forkWorker, type ExitInfo, type ForkIsolation, type WorkerProcess } from './child-process.js';
import { createChildLog } from '../host/child-log.js';
import { onAck, onBegin, onWorkerDeadLetter, onWorkerGone, poisonIds, type UpdateSink } from '../delivery/outbox.js';
import { createForkPacer } from './fork-pacer.js';
import { createLimiter } from './policy/limiter.js';
import { memoryVerdict, needsConfirmation } from './policy/memory.js';
import { emptyHistory, type RestartHistory, type RestartPolicy } from './policy/restart.js';
import { startMonitors } from './monitors.js';
import { realClock, type Clock, type Timer } from './clock.js';
import { stepExit, stepFault, type ExitContext, type ExitStep } from './step.js';
import { assertNever } from '../../common/errors.js';
import type { BotSpec, InvalidBot } from './child-spec.js';
import { checkWebhook, prepareDelivery, type DeliveryRequest } from './telegram-admin.js';

const HOUR_MS = 3_600_000;
/** Begun-not-acked updates tracked per polling worker before a flood of `begin` is a protocol violation. */
const MAX_TRACKED_IN_FLIGHT = 4096;

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

/** What the supervisor needs from outside; `fork` and `now` are seams for tests. */
export interface SupervisorDeps {
  config: Config;
  logger: Logger;
  cores: number;
  logsDir: string;
  secretTokenFor(botId: string): string;
  fork?: typeof forkWorker;
  /** Monotonic clock (ms) for every deadline and restart window; default performance.now. */
  now?: () => number;
  /** The clock and timers of every deadline, backoff and check (default: the real ones); `now` wins for the time if both are given. */
  clock?: Clock;
  /** Per-bot isolation at the fork (uid, permission flags); none when absent. */
  isolationFor?(botId: string, spec: BotSpec): ForkIsolation;
  /** Called after a worker's exit (e.g. to end every process left under the bot's uid). */
  onWorkerExit?(botId: string, pid: number): void;
  /** Told of every worker pid forked and exited (for zombie cleanup after a master crash). */
  onPids?(live: Array<{ pid: number; botId: string }>): void;
  /** Told of each restart decision: the bot's restart history and quarantine end (monotonic ms), to keep them in the registry. */
  onHistory?(botId: string, history: RestartHistory, quarantinedUntil: number | null, doNotRestart: boolean): void;
  /** Restart histories kept from an earlier master (monotonic ms of this process), applied when each bot is first seen. */
  histories?: Map<string, RestoredHistory>;
  /** Told of every dead-lettered update (to keep it in the dead-letter queue); `update` is null when a worker did not send it. */
  onDeadLetter?(botId: string, updateId: number, update: Update | null, reason: string): void;
  /** The delivery wing's journal (webhook updates, durable dedup); none in tests that do not deliver. */
  journal?: DeliveryPort;
}

/** What the supervisor tells the journal (see master/delivery/journal.ts). */
export interface DeliveryPort {
  attach(botId: string, sink: UpdateSink): void;
  pause(botId: string): void;
  workerGone(botId: string, fault: boolean): void;
  acked(botId: string, acks: ReadonlyArray<{ updateId: number; ok: boolean }>): void;
  ackedIds(botId: string): number[];
}

/** A restart history read back from the registry, on this process's monotonic clock. */
export interface RestoredHistory { history: RestartHistory; quarantinedUntil: number | null; doNotRestart: boolean }

import { createRoller, type RollSummary } from './rolling-restart.js';

export type { RollSummary };

/** Emitted on every state change. */
export interface TransitionEvent { botId: string; from: ChildState; to: ChildState; reason: string | null }

export interface Supervisor extends EventEmitter {
  /** Make the children match the registry: start new, stop disabled/removed, restart or hot-reload changed. */
  reconcile(specs: BotSpec[], invalid: InvalidBot[]): void;
  /** True when `botId` is a configured bot whose resolved mode is webhook. */
  isWebhookBot(botId: string): boolean;
  /**
   * Restart one bot (also out of quarantine), or every bot in rolling batches; a
   * rolling restart asked for while one runs joins it. Resolves when done, with what
   * was restarted and what was skipped and why (quarantined, stopped, backoff, timeout).
   * @throws BotfleetError `BF_ERR_BOT_NOT_FOUND`, `BF_ERR_BAD_INPUT` (disabled or invalid bot)
   */
  restart(botId?: string): Promise<RollSummary>;
  status(): WorkerStatus[];
  capacity(): number;
  /** Stop every child (drain, then SIGKILL at the deadline). Resolves with the bots that had to be killed. */
  stopAll(): Promise<string[]>;
  /** SIGKILL every worker's process group now, no drain. */
  forceKill(): void;
  /**
   * Check every running webhook bot's registration with Telegram (getWebhookInfo) and
   * set it again where it drifted; each drift is logged and counted (`webhookDrifts`).
   * Never throws: a failed check is logged. @returns the bots that had drifted
   */
  checkWebhooks(): Promise<string[]>;
}

export function createSupervisor(d: SupervisorDeps): Supervisor {
  const { config: cfg, logger } = d;
  const fork = d.fork ?? forkWorker;
  const clock = d.clock ?? realClock;
  const now = d.now ?? (() => clock.now());
  /** A monotonic time as wall-clock ms, for what is shown (ISO times in status). */
  const wall = (mono: number) => Date.now() - (now() - mono);
  const children = new Map<string, Child>();
  const limiter = createLimiter(cfg.startConcurrency);
  const pacer = createForkPacer();
  // A fleet start would otherwise fire every bot's setWebhook/deleteWebhook in one tick: a burst for the loop and for Telegram.
  const preparing = createLimiter(PREPARE_CONCURRENCY);
  const cap = effectiveCapacity(cfg, d.cores);
  const policy: RestartPolicy = { maxRestarts: cfg.maxRestartsPerHour, periodMs: HOUR_MS, baseMs: cfg.restartBackoffMs, capMs: cfg.restartCooldownMs, healthyRunMs: cfg.healthyRunMs };
  const events = new EventEmitter() as Supervisor;
  let shuttingDown = false;
  /** Set once stopAll() has finished: nothing is reported after that. */
  let stopped = false;

  function transition(c: Child, to: ChildState, reason: string | null): void {
    const from = c.state;
    if (!ALLOWED_TRANSITIONS[from].includes(to)) {
      logger.error({ botId: c.botId, from, to, reason }, 'refused transition (supervisor bug)');
      return;
    }
    c.state = to;
    c.stateReason = reason;
    logger.info({ botId: c.botId, from, to, reason }, 'transition');
    events.emit('transition', { botId: c.botId, from, to, reason } satisfies TransitionEvent);
    if (to === 'running' && c.proc) d.journal?.attach(c.botId, c.proc);
    else if (from === 'running') d.journal?.pause(c.botId);
    if ((to === 'stopped' || to === 'quarantined' || to === 'pending') && !fillQueued) {
      fillQueued = true;
      queueMicrotask(fillCapacity);
    }
  }

  const clearTimer = (c: Child) => {
    if (c.timer) clock.clearTimeout(c.timer);
    c.timer = null;
  };
  const holdsSlot = (c: Child) => c.proc !== null || c.launching || c.state === 'backoff';
  const used = () => [...children.values()].filter(holdsSlot).length;

  // One fill per microtask however many transitions asked for it; `used()` is counted once
  // per fill (a scan of every child per candidate would be quadratic in a large fleet).
  let fillQueued = false;
  function fillCapacity(): void {
    fillQueued = false;
    if (shuttingDown) return;
    let free = cap - used();
    for (const c of children.values()) {
      if (free <= 0) return;
      if (c.state === 'pending' && c.intent === 'run') {
        free--;
        void launch(c, 'capacity available');
      }
    }
  }

  async function launch(c: Child, why: string): Promise<void> {
    if (c.proc || c.launching || shuttingDown || !c.spec) return;
    clearTimer(c);
    if (!holdsSlot(c) && used() >= cap) {
      if (c.state !== 'pending') transition(c, 'pending', `over capacity (${cap} workers)`);
      return;
    }
    c.launching = true;
    const abandoned = () => c.intent !== 'run' || shuttingDown || !c.spec;
    // Telegram-side preparation is I/O, not CPU: done before taking a fork slot so it overlaps other forks.
    // Shown as `pending` (waiting its turn): `starting` means forked.
    if (!abandoned() && c.prepareDelivery) {
      if (c.state !== 'pending') transition(c, 'pending', `preparing Telegram's side (${why})`);
      let prepared = false;
      const done = await preparing.acquire();
      try {
        prepared = await prepare(c);
      } catch (err) {
        c.launching = false;
        return afterFault(c, 'crash', errorMessage(err));
      } finally {
        done();
      }
      if (!prepared) return;
    }
    if (c.state !== 'starting') transition(c, 'starting', why);
    const release = await limiter.acquire();
    try {
      await pacer.run(() => {
        if (abandoned()) {
          release();
          c.launching = false;
          return transition(c, 'stopped', c.stateReason);
        }
        spawn(c, c.spec!, release);
      });
    } catch (err) {
      // EMFILE, EAGAIN, ENOMEM, a bad uid: a failed start of this bot (backoff), never the master's end.
      release();
      logger.error({ botId: c.botId, err: errorMessage(err) }, 'fork failed');
      c.launching = false;
      afterFault(c, 'crash', `fork failed: ${errorMessage(err)}`);
    } finally {
      c.launching = false;
    }
  }

  const deliveryRequest = (c: Child, spec: BotSpec, mode: DeliveryMode): DeliveryRequest => ({
    botId: c.botId, token: spec.token, apiRoot: spec.apiRoot ?? cfg.telegramApiRoot, mode,
    webhookHost: cfg.webhookHost, secretToken: d.secretTokenFor(c.botId), autoSwitch: cfg.autoSwitchMode,
  });

  /** Align Telegram with the bot's mode. @returns false when the child went to backoff/quarantine instead. */
  async function prepare(c: Child): Promise<boolean> {
    const spec = c.spec!;
    const wanted = spec.mode ?? cfg.mode;
    const mode = wanted === 'auto' ? (cfg.webhookHost ? 'webhook' : 'polling') : wanted;
    const r = await prepareDelivery(deliveryRequest(c, spec, mode));
    if (!r.ok) {
      c.launching = false;
      if (r.tokenRejected) {
        c.quarantinedUntil = null;
        transition(c, 'quarantined', r.message);
      } else afterFault(c, 'crash', r.message);
      return false;
    }
    c.mode = r.mode;
    c.note = r.note;
    if (r.note) logger.warn({ botId: c.botId, note: r.note }, 'delivery prepared with a note');
    c.prepareDelivery = false;
    return true;
  }

  function spawn(c: Child, spec: BotSpec, release: () => void): void {
    c.log ??= createChildLog(d.logsDir, c.botId, cfg.logMaxBytes, cfg.workerLogBytesPerSec, now);
    const log = c.log;
    let violation: string | null = null;
    const isolation = d.isolationFor?.(c.botId, spec);
    c.uid = isolation?.uid ?? null;
    const proc: WorkerProcess = fork({
      maxOldSpaceMb: cfg.maxMemoryPerWorkerMb,
      logLevel: cfg.logLevel,
      schedPolicy: cfg.workerSchedPolicy,
      now,
      isolation,
      onOutput: (line, stream, truncated) => log.line(line, stream, proc?.pid ?? 0, spec.token, truncated),
      onMessage: (m) => onMessage(c, proc, m),
      // A violation can be found while fork() is still returning: remembered, acted on below.
      onViolation: (why) => (proc ? protocolViolation(c, proc, why) : (violation = why)),
    });
    Object.assign(c, { proc, startedAt: now(), lastHeartbeatAt: null, endReason: null, fatalMessage: null, releaseSlot: release, rssBytes: 0, cpuPercent: null, memOver: 0, queueDepth: 0 });
    reportPids();
    void proc.exited.then((info) => onExit(c, proc, info));
    proc.send({
      v: 1, type: 'init', home: cfg.home, heartbeatIntervalMs: cfg.heartbeatIntervalMs, drainTimeoutMs: cfg.workerTimeoutMs,
      pollingTimeoutSec: cfg.pollingTimeoutSec, dedupWindowMs: cfg.dedupWindowMs,
      skipUpdateIds: poisonIds(c.delivery), ackedUpdateIds: d.journal?.ackedIds(c.botId) ?? [],
      bot: { id: c.botId, name: spec.name, token: spec.token, apiRoot: spec.apiRoot ?? cfg.telegramApiRoot, mode: c.mode!, handler: spec.handler, settings: spec.settings,
        api: botApiPolicy({ maxRetries: cfg.apiMaxRetries, retryBackoffMs: cfg.apiRetryBackoffMs, rateLimitGlobal: cfg.rateLimitGlobal, rateLimitPerChat: cfg.rateLimitPerChat }, spec.settings) },
    });
    // Deferred by one setImmediate: after a pause of the master, expired timers run before
    // pending pipe data is read, and a `ready` already sent must be seen first.
    c.timer = clock.setTimeout(() => setImmediate(() => c.proc === proc && c.state === 'starting' && kill(c, 'startup-timeout')), cfg.startupTimeoutMs);
    logger.info({ botId: c.botId, workerPid: proc.pid, mode: c.mode }, 'worker forked');
    if (violation) protocolViolation(c, proc, violation);
  }

  /** The worker broke the protocol or its limits: killed with reason `protocol` (a fault: backoff, quota, quarantine). */
  function protocolViolation(c: Child, proc: WorkerProcess, why: string): void {
    if (c.proc !== proc) return;
    c.fatalMessage = null;
    c.protocolDetail = why;
    logger.warn({ botId: c.botId, workerPid: proc.pid, why }, 'protocol violation: killing worker');
    kill(c, 'protocol');
  }

  function onMessage(c: Child, proc: WorkerProcess, raw: unknown): void {
    if (c.proc !== proc) return;
    const m = parseWorkerMessage(raw);
    if (m === null) return protocolViolation(c, proc, 'a message that breaks the protocol');
    if (m.type === 'unknown') {
      if (c.unknownMessages++ < 10) logger.warn({ botId: c.botId, type: m.name }, 'unknown IPC message dropped');
      return;
    }
    switch (m.type) {
      case 'ready':
        clearTimer(c);
        c.releaseSlot?.();
        c.releaseSlot = null;
        c.lastHeartbeatAt = now();
        if (c.state === 'starting') transition(c, 'running', null);
        return;
      case 'heartbeat':
        Object.assign(c, { lastHeartbeatAt: now(), messages: m.messages, errors: m.errors, queueDepth: m.queueDepth, rssBytes: c.cpuPercent === null ? m.rssBytes : c.rssBytes, lastError: m.lastError, username: m.username });
        return;
      case 'begin':
        let begun = 0;
        for (const id of m.updateIds) begun = onBegin(c.delivery, id);
        // A worker holds at most 64 updates in flight plus one getUpdates batch (100): far more is a flood.
        if (begun > MAX_TRACKED_IN_FLIGHT) protocolViolation(c, proc, `over ${MAX_TRACKED_IN_FLIGHT} updates begun and not acked`);
        return;
      case 'ack':
        for (const a of m.acks) onAck(c.delivery, a.updateId);
        d.journal?.acked(c.botId, m.acks);
        return;
      case 'dlq':
        onWorkerDeadLetter(c.delivery, m.updateId);
        d.journal?.acked(c.botId, [{ updateId: m.updateId, ok: false }]);
        logger.warn({ botId: c.botId, updateId: m.updateId, err: m.error }, 'update dead-lettered');
        d.onDeadLetter?.(c.botId, m.updateId, m.update ?? null, m.error);
        return;
      case 'error':
        c.fatalMessage = m.message;
        logger.error({ botId: c.botId, reason: m.reason, err: m.message }, 'worker reported a fatal error');
        return;
      default:
        assertNever(m); // a new message type must be handled here, or this does not compile
    }
  }

  /** The master ends the process: SIGKILL to its group, `reason` recorded. */
  function kill(c: Child, reason: ExitReason): void {
    if (!c.proc) return;
    c.endReason ??= reason;
    logger.warn({ botId: c.botId, workerPid: c.proc.pid, reason }, 'killing worker');
    c.proc.kill('SIGKILL');
  }

  function onExit(c: Child, proc: WorkerProcess, info: ExitInfo): void {
    if (c.proc !== proc) return;
    clearTimer(c);
    c.releaseSlot?.();
    Object.assign(c, { proc: null, releaseSlot: null, queueDepth: 0 });
    reportPids();
    // Whatever the worker left in its process group dies with it (a graceful exit left them before).
    // The group id cannot be reused while a member lives, so this never hits a stranger.
    try {
      process.kill(-proc.pid, 'SIGKILL');
    } catch {
      // the group is empty
    }
    d.onWorkerExit?.(c.botId, proc.pid);
    const st = stepExit(exitContext(c), info, now(), policy, c.stateReason);
    onWorkerGone(c.delivery, st.fault);
    d.journal?.workerGone(c.botId, st.fault);
    c.lastExit = { code: info.code, signal: info.signal, reason: st.reason, at: new Date().toISOString() };
    c.exitsByReason[st.reason] = (c.exitsByReason[st.reason] ?? 0) + 1;
    logger[c.intent === 'run' ? 'warn' : 'info']({ botId: c.botId, workerPid: proc.pid, ...info, reason: st.reason }, 'worker exited');
    apply(c, st);
  }

  /** What the pure step needs of a child. */
  const exitContext = (c: Child): ExitContext => ({
    state: c.state, intent: c.intent, shuttingDown, endReason: c.endReason, history: c.history,
    ranMs: c.startedAt === null ? 0 : now() - c.startedAt, fatalMessage: c.fatalMessage, protocolDetail: c.protocolDetail,
  });

  /** Carry out a step: the one state change, then its effects. */
  function apply(c: Child, st: ExitStep): void {
    c.intent = st.intent;
    c.history = st.history;
    if (st.quarantinedUntil !== undefined) c.quarantinedUntil = st.quarantinedUntil;
    if (st.countsAsRestart) c.restartsTotal++;
    transition(c, st.to, st.stateReason);
    for (const e of st.effects) {
      switch (e.type) {
        case 'launch':
          void launch(c, e.why);
          break;
        case 'arm-restart':
          c.timer = clock.setTimeout(() => void launch(c, e.why), e.delayMs);
          break;
        case 'arm-quarantine-end':
          c.timer = clock.setTimeout(() => retryQuarantined(c), Math.max(0, e.until - now()));
          break;
        case 'save-history':
          d.onHistory?.(c.botId, e.history, e.quarantinedUntil, e.doNotRestart);
          break;
        default:
          assertNever(e);
      }
    }
  }

  /** A child failed before or at its start (prepare or fork failed): restart per policy or quarantine. */
  function afterFault(c: Child, reason: ExitReason, detail?: string): void {
    apply(c, stepFault(exitContext(c), reason, now(), policy, detail));
  }

  function retryQuarantined(c: Child): void {
    c.quarantinedUntil = null;
    if (c.intent === 'run' && c.state === 'quarantined') void launch(c, 'quarantine window freed');
  }

  // Throttled (PID_RECORD_EVERY_MS): leading write when idle, one trailing write for a burst.
  let pidsTimer: Timer | null = null;
  let pidsWrittenAt = -Infinity;
  function reportPids(): void {
    if (!d.onPids || pidsTimer || stopped) return;
    const wait = Math.max(0, pidsWrittenAt + PID_RECORD_EVERY_MS - now());
    pidsTimer = clock.setTimeout(() => {
      pidsTimer = null;
      if (stopped) return;
      pidsWrittenAt = now();
      d.onPids!([...children.values()].filter((c) => c.proc).map((c) => ({ pid: c.proc!.pid, botId: c.botId })));
    }, wait);
  }


  /**
   * Ask the worker to drain and exit; SIGKILL at the deadline. Resolves when it has exited.
   * `intent` says what follows: `stop`, an immediate `restart`, or `run` (a fault: the restart policy decides).
   */
  async function stopProc(c: Child, reason: ExitReason, intent: 'stop' | 'restart' | 'run', why: string): Promise<boolean> {
    c.intent = intent;
    clearTimer(c);
    const proc = c.proc;
    if (!proc) {
      if (intent === 'stop' && c.state !== 'stopped') transition(c, 'stopped', why);
      return false;
    }
    c.endReason ??= reason;
    transition(c, 'draining', why);
    try {
      proc.send({ v: 1, type: 'shutdown', reason: why });
    } catch {
      proc.kill('SIGKILL');
    }
    let killed = false;
    const deadline = clock.setTimeout(() => {
      killed = true;
      logger.warn({ botId: c.botId, workerPid: proc.pid, deadlineMs: cfg.workerTimeoutMs }, 'drain deadline passed, SIGKILL');
      proc.kill('SIGKILL');
    }, cfg.workerTimeoutMs);
    await proc.exited;
    clock.clearTimeout(deadline);
    return killed;
  }

  const capBytes = cfg.maxMemoryPerWorkerMb * 1024 * 1024;
  const stopMonitors = startMonitors({
    children: () => children.values(), now, clock, heartbeatTimeoutMs: cfg.heartbeatTimeoutMs, memoryCheckIntervalMs: cfg.memoryCheckIntervalMs,
    onHung: (c) => kill(c, 'hung'),
    onPause(gapMs) {
      // The master itself was not running (SIGSTOP, suspend, starvation): the children were not late, we were.
      let n = 0;
      for (const c of children.values()) if (c.proc && c.lastHeartbeatAt !== null) {
        c.lastHeartbeatAt = now();
        n++;
      }
      logger.warn({ pausedMs: Math.round(gapMs), children: n }, 'the master was not running: heartbeat deadlines renewed');
    },
    onSample(c, rssBytes, cpuPercent) {
      c.rssBytes = rssBytes;
      c.cpuPercent = cpuPercent;
      const v = memoryVerdict(c.memOver, rssBytes, capBytes);
      c.memOver = v.over;
      if (!v.restart || c.state !== 'running') return needsConfirmation(v.over);
      logger.warn({ botId: c.botId, rssBytes, capBytes }, 'memory cap exceeded');
      void stopProc(c, 'memory', 'run', `RSS ${Math.round(rssBytes / 1048576)} MB over the ${cfg.maxMemoryPerWorkerMb} MB cap`);
      return false;
    },
  });

  function reconcileOne(spec: BotSpec): void {
    let c = children.get(spec.id);
    let restored: RestoredHistory | undefined;
    if (!c) {
      c = newChild(spec.id, spec.name, spec);
      children.set(spec.id, c);
      restored = d.histories?.get(spec.id);
      if (restored) c.history = restored.history;
    }
    const old = c.spec;
    c.spec = spec;
    c.name = spec.name;
    if (!spec.enabled) {
      if (c.intent !== 'stop' || c.state !== 'stopped') void stopProc(c, 'operator', 'stop', 'disabled');
      return;
    }
    const material = !old || old.token !== spec.token || old.mode !== spec.mode || old.handler !== spec.handler || old.apiRoot !== spec.apiRoot;
    if (material) c.prepareDelivery = true;
    if (c.intent !== 'run') {
      c.intent = 'run';
      if (restored && (restored.doNotRestart || (restored.quarantinedUntil !== null && restored.quarantinedUntil > now()))) return restoreQuarantine(c, restored);
      if (!c.proc) return void launch(c, old ? 'enabled' : 'configured');
    }
    if (old && material && c.proc) return void stopProc(c, 'config-change', 'restart', 'configuration changed');
    if (old && material && c.state === 'quarantined' && !c.launching) {
      // A fixed token or handler deserves a fresh try, without waiting for the window.
      clearTimer(c);
      c.history = emptyHistory();
      c.quarantinedUntil = null;
      d.onHistory?.(c.botId, c.history, null, false);
      return void launch(c, 'configuration changed');
    }
    if (old && JSON.stringify(old.settings) !== JSON.stringify(spec.settings) && c.proc && c.state === 'running') {
      try {
        c.proc.send({ v: 1, type: 'settings', settings: spec.settings });
        logger.info({ botId: c.botId }, 'settings sent to worker (hot reload)');
      } catch (err) {
        logger.warn({ botId: c.botId, err: errorMessage(err) }, 'could not send settings');
      }
    }
  }

  async function restartOne(c: Child, reason: ExitReason): Promise<void> {
    if (!c.spec?.enabled) return;
    if (c.proc) {
      await stopProc(c, reason, 'restart', reason);
      return;
    }
    c.intent = 'run';
    c.history = emptyHistory();
    c.quarantinedUntil = null;
    d.onHistory?.(c.botId, c.history, null, false);
    await launch(c, reason);
  }

  /** A quarantine from before the master restarted (kept in the registry) goes on where it was. */
  function restoreQuarantine(c: Child, r: RestoredHistory): void {
    c.quarantinedUntil = r.doNotRestart ? null : r.quarantinedUntil;
    transition(c, 'quarantined', r.doNotRestart ? 'quarantined before the master restarted (do not restart: exit 78); restart it once fixed' : 'quarantined before the master restarted (restart quota used up)');
    if (c.quarantinedUntil !== null) c.timer = clock.setTimeout(() => retryQuarantined(c), Math.max(0, c.quarantinedUntil - now()));
  }

  const roller = createRoller({
    bots: () => [...children.values()].filter((c) => c.spec?.enabled), restartOne, events, logger, clock,
    settleMs: cfg.startupTimeoutMs + cfg.workerTimeoutMs, rollingRestartPercent: cfg.rollingRestartPercent,
  });

  return Object.assign(events, {
    reconcile(specs: BotSpec[], invalid: InvalidBot[]) {
      const seen = new Set<string>();
      for (const spec of specs) {
        seen.add(spec.id);
        reconcileOne(spec);
      }
      for (const bad of invalid) {
        seen.add(bad.id);
        let c = children.get(bad.id);
        if (!c) children.set(bad.id, (c = newChild(bad.id, bad.name, null)));
        c.spec = null;
        logger.error({ botId: bad.id, reason: bad.reason }, 'bot configuration invalid; bot not started');
        void stopProc(c, 'config-change', 'stop', `invalid configuration: ${bad.reason}`).then(() => {
          if (c!.state === 'stopped') c!.stateReason = `invalid configuration: ${bad.reason}`;
        });
      }
      for (const [id, c] of children) {
        if (seen.has(id)) continue;
        void stopProc(c, 'operator', 'stop', 'removed').then(() => {
          if (children.get(id) === c && c.intent === 'stop') {
            children.delete(id);
            void c.log?.close();
          }
        });
      }
    },
    isWebhookBot: (botId: string) => children.get(botId)?.mode === 'webhook' && children.get(botId)?.intent !== 'stop',
    async restart(botId?: string): Promise<RollSummary> {
      if (botId !== undefined) {
        const c = children.get(botId);
        if (!c) throw fail(ErrorCodes.BOT_NOT_FOUND, `no bot with id "${botId}"`);
        if (!c.spec?.enabled) throw fail(ErrorCodes.BAD_INPUT, `bot "${botId}" is ${c.spec ? 'disabled' : 'not valid'}; enable or fix it first`);
        await restartOne(c, 'operator');
        const st = await roller.settled(c);
        return st === 'running' ? { restarted: [botId], skipped: [] } : { restarted: [], skipped: [{ botId, why: st }] };
      }
      return roller.request();
    },
    forceKill() {
      shuttingDown = true;
      stopMonitors();
      for (const c of children.values()) c.proc?.kill('SIGKILL');
    },
    async checkWebhooks() {
      const drifted: string[] = [];
      // One bot at a time: a few calls a minute for a big fleet, never a burst.
      for (const c of [...children.values()]) {
        if (shuttingDown) break;
        if (c.state !== 'running' || c.mode !== 'webhook' || !c.spec) continue;
        try {
          const drift = await checkWebhook(deliveryRequest(c, c.spec, 'webhook'));
          if (drift === null) continue;
          c.webhookDrifts++;
          drifted.push(c.botId);
          logger.warn({ botId: c.botId, drift }, 'webhook registration had drifted (another tool set it?); set again');
        } catch (err) {
          logger.warn({ botId: c.botId, err: errorMessage(err) }, 'webhook registration check failed');
        }
      }
      return drifted;
    },
    status: () => [...children.values()].map((c) => childStatus(c, now(), HOUR_MS, wall)),
    capacity: () => cap,
    async stopAll() {
      shuttingDown = true;
      roller.cancel(); // a coalesced roll never starts once the master stops
      stopMonitors();
      const results = await Promise.all([...children.values()].map(async (c) => ((await stopProc(c, 'operator', 'stop', 'master shutting down')) ? c.botId : null)));
      await Promise.all([...children.values()].map((c) => c.log?.close()));
      stopped = true;
      if (pidsTimer) clock.clearTimeout(pidsTimer); // the master removes the record after a clean stop
      return results.filter((x): x is string => x !== null);
    },
  });
}

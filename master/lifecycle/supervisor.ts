/**
 * The supervisor: the one owner of the children map, behind the `Supervisor` interface.
 * Everything that happens to a bot (the registry's listing, a worker's message or exit,
 * a monitor's finding, an operator's restart, the master's shutdown) becomes an event of
 * the one machine (phase.ts, step.ts), applied by the dispatcher (dispatcher.ts).
 */
import { EventEmitter } from 'node:events';
import { ErrorCodes, errorMessage, fail } from '../../common/errors.js';
import { childStatus, type Child, type LastExit, type TransitionRecord, type WorkerStatus } from './child.js';
import { judgedMemory, overMemoryCap } from './policy/memory.js';
import { pssBytes } from '../host/proc.js';
import { startMonitors } from './monitors.js';
import { realClock } from './clock.js';
import type { BotSpec, InvalidBot } from '../../config/bot-spec.js';
import { checkWebhook as checkWebhookReal } from './telegram-admin.js';
import { createRoller, type RollSummary } from './rolling-restart.js';
import { Dispatcher, HOUR_MS } from './dispatcher.js';
import { createLauncher } from './launch.js';
import { meantToRun } from './phase.js';
import type { SupervisorDeps } from './supervisor-deps.js';

export type { DeliveryPort, RestoredHistory, SupervisorDeps, TransitionEvent } from './supervisor-deps.js';
export type { RollSummary };
import { reconcileAll } from './reconcile.js';
import type { BotTotals } from './counters.js';
import type { RecentLine } from '../host/child-log.js';


/** One bot as `botfleet describe` shows it (besides its registry row): never a token. */
export interface BotDescription {
  status: WorkerStatus;
  /** The last state changes and exits, oldest first (at most HISTORY_KEPT each). */
  transitions: TransitionRecord[];
  exits: LastExit[];
  /** The restart window: restarts counted against MAX_RESTARTS_PER_HOUR (ISO times). */
  restartWindow: { max: number; periodMs: number; restarts: string[] };
  /** The uid its current worker runs as (per-bot uids), else null. */
  uid: number | null;
  /** Output lines dropped over WORKER_LOG_BYTES_PER_SEC since its log was opened. */
  droppedLogLines: number;
  /** Its last log lines (time, level, msg only; token scrubbed), oldest first. */
  recentLog: RecentLine[];
}

export interface Supervisor extends EventEmitter {
  /** Make the children match the registry: start new, stop disabled/removed, restart or hot-reload changed. */
  reconcile(specs: BotSpec[], invalid: InvalidBot[]): void;
  /** True when `botId` is a configured bot whose resolved mode is webhook (in a cluster: also one another member runs, by its configured mode). */
  isWebhookBot(botId: string): boolean;
  /**
   * Restart one bot (also out of quarantine), or every bot in rolling batches; a
   * rolling restart asked for while one runs joins it. Resolves when done, with what
   * was restarted and what was skipped and why (quarantined, stopped, backoff, timeout).
   * @throws BotfleetError `BF_ERR_BOT_NOT_FOUND`, `BF_ERR_BAD_INPUT` (disabled or invalid bot)
   */
  restart(botId?: string): Promise<RollSummary>;
  status(): WorkerStatus[];
  /** Everything the supervisor knows of one bot. @throws BotfleetError `BF_ERR_BOT_NOT_FOUND` */
  describe(botId: string): BotDescription;
  capacity(): number;
  /** Each configured bot's counters since the master started (handler-duration buckets, API errors): read by /metrics. */
  totals(): Array<[string, BotTotals]>;
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
  /**
   * The cluster changed who runs `botId` (deps.ownerOf already says so): null, this master
   * (it launches); else that owner's name (it drains and stops). Resolves once its worker,
   * if any, has exited: only then may another master start it.
   */
  ownershipChanged(botId: string, owner: string | null): Promise<void>;
  /** The cluster's lease was renewed: every worker may poll until `until` (machine monotonic ms; worker/lease.ts). */
  renewLease(until: number): void;
}

/**
 * A supervisor for `d.config`'s fleet: the core (supervisor-core.ts), its monitors
 * (heartbeat deadline, memory cap, pause detection) and the rolling restarts, behind
 * the `Supervisor` interface. Only wiring: the lifecycle lives in the modules it joins.
 */
export function createSupervisor(d: SupervisorDeps): Supervisor {
  const events = new EventEmitter() as Supervisor;
  const core = new Dispatcher(d, events, d.clock ?? realClock);
  core.useLauncher(createLauncher(core, d.telegram));
  const { children, now } = core;
  const stopMonitors = startChildMonitors(core);
  const roller = createRoller({
    bots: () => [...children.values()].filter((c) => c.spec?.enabled), restartOne: (c) => core.dispatch(c, { type: 'restart', reason: 'rolling-restart' }), events, logger: d.logger, clock: core.clock,
    settleMs: d.config.startupTimeoutMs + d.config.workerTimeoutMs, rollingRestartPercent: d.config.rollingRestartPercent,
  });
  return Object.assign(events, {
    reconcile: (specs: BotSpec[], invalid: InvalidBot[]) => reconcileAll(core, specs, invalid),
    isWebhookBot: (botId: string) => takesWebhooks(core, botId),
    async restart(botId?: string): Promise<RollSummary> {
      if (botId === undefined) return roller.request();
      const c = children.get(botId);
      if (!c) throw fail(ErrorCodes.BOT_NOT_FOUND, `no bot with id "${botId}"`);
      if (!c.spec?.enabled) throw fail(ErrorCodes.BAD_INPUT, `bot "${botId}" is ${c.spec ? 'disabled' : 'not valid'}; enable or fix it first`);
      core.dispatch(c, { type: 'restart', reason: 'operator' });
      const st = await roller.settled(c);
      return st === 'running' ? { restarted: [botId], skipped: [] } : { restarted: [], skipped: [{ botId, why: st }] };
    },
    forceKill() {
      core.shuttingDown = true;
      stopMonitors();
      for (const c of children.values()) c.proc?.kill('SIGKILL');
    },
    checkWebhooks: () => checkWebhooks(core),
    ...clusterSide(core),
    status: () => [...children.values()].map((c) => withOwner(d, childStatus(c, now(), HOUR_MS, (t) => core.wall(t)))),
    describe(botId: string): BotDescription {
      const c = children.get(botId);
      if (!c) throw fail(ErrorCodes.BOT_NOT_FOUND, `no bot with id "${botId}"`);
      return {
        status: childStatus(c, now(), HOUR_MS, (t) => core.wall(t)), transitions: [...c.transitions], exits: [...c.exits],
        restartWindow: { max: d.config.maxRestartsPerHour, periodMs: HOUR_MS, restarts: c.life.history.restarts.map((t) => new Date(core.wall(t)).toISOString()) },
        uid: c.uid, droppedLogLines: c.log?.droppedLines() ?? 0, recentLog: c.log?.recent() ?? [],
      };
    },
    capacity: () => core.cap,
    totals: () => [...children.values()].map((c): [string, BotTotals] => [c.botId, c.totals]),
    async stopAll() {
      core.shuttingDown = true;
      roller.cancel(); // a coalesced roll never starts once the master stops
      stopMonitors();
      const live = [...children.values()].flatMap((c) => (c.proc ? [c.proc.exited] : []));
      for (const c of [...children.values()]) core.dispatch(c, { type: 'shutdown' });
      await Promise.all(live);
      // A spawn under way ends in a worker the shutdown then kills: waited for too.
      await core.settled();
      await Promise.all([...children.values()].map((c) => c.log?.close()));
      core.endPidRecord();
      return [...core.killedAtDeadline];
    },
  });
}

/** Whether `botId`'s webhook updates are taken here. In a cluster any master journals them, whoever runs the bot (shared-journal.ts): by its mode as resolved here, else as configured (a bot just taken, or run by another member). */
function takesWebhooks(core: Dispatcher, botId: string): boolean {
  const c = core.children.get(botId);
  if (c === undefined) return false;
  if (core.d.ownerOf && c.spec?.enabled) return (c.life.mode ?? c.spec.mode ?? core.d.config.mode) === 'webhook';
  return c.life.mode === 'webhook' && meantToRun(c.life.phase);
}

/** A status row with its cluster owner (`owner`), in a cluster. */
const withOwner = (d: SupervisorDeps, row: WorkerStatus): WorkerStatus => (d.memberOf ? { ...row, owner: d.memberOf(row.botId) } : row);

/** What the cluster tells the supervisor: ownership changes (as lifecycle events) and the lease's deadline for the workers. */
function clusterSide(core: Dispatcher): Pick<Supervisor, 'ownershipChanged' | 'renewLease'> {
  const { children } = core;
  return {
    renewLease(until: number) {
      for (const c of children.values()) {
        if (c.life.phase.tag !== 'running' && c.life.phase.tag !== 'starting') continue; // a draining worker is not given more time
        try {
          c.proc?.send({ v: 1, type: 'lease', until });
        } catch {
          // its channel is closed: its exit is on the way
        }
      }
    },
    async ownershipChanged(botId: string, owner: string | null) {
      const c = children.get(botId);
      if (!c || (owner === null && !c.spec?.enabled)) return; // a bot disabled meanwhile stays stopped
      const exiting = c.proc?.exited;
      core.dispatch(c, owner === null ? { type: 'ownership-gained', restored: core.d.histories?.get(botId) ?? null } : { type: 'ownership-lost', owner });
      if (owner === null) return;
      await exiting;
      await core.settled(c); // a worker forked meanwhile is killed (its launch is stale): waited for too
    },
  };
}

/** Heartbeat deadlines (a hung child is killed), resource samples (the memory cap), and the master's own pauses. @returns stop */
function startChildMonitors(core: Dispatcher): () => void {
  const { cfg, children, logger, now } = core;
  const capBytes = cfg.maxMemoryPerWorkerMb * 1024 * 1024;
  const dataCapBytes = cfg.maxDataPerBotMb * 1024 * 1024;
  return startMonitors({
    children: () => children.values(), now, clock: core.clock, heartbeatTimeoutMs: cfg.heartbeatTimeoutMs, memoryCheckIntervalMs: cfg.memoryCheckIntervalMs,
    onHung: (c) => c.proc && core.dispatch(c, { type: 'heartbeat-overdue', pid: c.proc.pid }),
    onPause(gapMs) {
      // The master itself was not running (SIGSTOP, suspend, starvation): the children were not late, we were.
      let n = 0;
      for (const c of children.values()) if (c.proc && c.lastHeartbeatAt !== null) {
        c.lastHeartbeatAt = now();
        n++;
      }
      logger.warn({ pausedMs: Math.round(gapMs), children: n }, 'the master was not running: heartbeat deadlines renewed');
    },
    dataCheckIntervalMs: cfg.dataCheckIntervalMs,
    ...(core.d.pidsOf ? { treeOf: (c: Child) => core.d.pidsOf!(c.botId) } : {}),
    ...(core.d.dataUsage ? { measureData: (c: Child) => core.d.dataUsage!(c.botId, dataCapBytes) } : {}),
    onData(c: Child, bytes: number) {
      if (bytes <= dataCapBytes || !c.proc) return;
      logger.warn({ botId: c.botId, dataBytes: bytes, capBytes: dataCapBytes }, 'data directory over its cap: stopping the bot');
      const message = `its data directory is over MAX_DATA_PER_BOT_MB (${cfg.maxDataPerBotMb} MB): free it, then botfleet restart ${c.botId}`;
      core.dispatch(c, { type: 'disk-over-cap', pid: c.proc.pid, message });
    },
    onSample(c: Child, rssBytes: number | null, cpuPercent: number | null, pids: number[]) {
      const charged = core.d.memoryOf?.(c.botId) ?? null;
      if (charged === null && rssBytes === null) return; // the group unreadable between two reads of the tree: shown as it was
      const bytes = judgedMemory({ charged, rss: rssBytes ?? 0, pss: () => pssBytes(pids) }, capBytes);
      c.rssBytes = bytes;
      if (cpuPercent !== null) c.cpuPercent = cpuPercent;
      if (!overMemoryCap(bytes, capBytes) || !c.proc) return;
      // Killed at once, draining or not: a graceful stop would let it grow for the whole drain.
      logger.warn({ botId: c.botId, memoryBytes: bytes, capBytes, state: c.state }, 'memory cap exceeded: killing the worker');
      core.dispatch(c, { type: 'memory-over-cap', pid: c.proc.pid });
    },
  });
}

/** Each running webhook bot's registration checked in turn (a few calls a minute for a big fleet, never a burst). @returns the bots that had drifted */
async function checkWebhooks(core: Dispatcher): Promise<string[]> {
  const checkWebhook = core.d.checkWebhook ?? checkWebhookReal;
  const drifted: string[] = [];
  for (const c of [...core.children.values()]) {
    if (core.shuttingDown) break;
    if (c.state !== 'running' || c.life.mode !== 'webhook' || !c.spec) continue;
    try {
      const drift = await checkWebhook(core.deliveryRequest(c, c.spec, 'webhook'));
      if (drift === null) continue;
      c.webhookDrifts++;
      drifted.push(c.botId);
      core.logger.warn({ botId: c.botId, drift }, 'webhook registration had drifted (another tool set it?); set again');
    } catch (err) {
      core.logger.warn({ botId: c.botId, err: errorMessage(err) }, 'webhook registration check failed');
    }
  }
  return drifted;
}

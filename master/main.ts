/**
 * The master: wires configuration, registry, supervisor, webhook server, status
 * server and control socket together, and maps signals to actions:
 * SIGTERM/SIGINT graceful stop (a second SIGINT forces it), SIGUSR2 rolling
 * restart, SIGHUP registry reload.
 */
import fs from 'node:fs';
import path from 'node:path';
import pino, { type Logger } from 'pino';
import { createLogger } from '../common/logger.js';
import { VERSION } from '../common/version.js';
import { errorMessage } from '../common/errors.js';
import { homePaths, type Config } from '../config/load.js';
import { loadStatusToken, loadWebhookSecret, webhookSecretToken } from '../config/secrets.js';
import { startControlServer, tokenFileOf } from './surfaces/control-server.js';
import { openLogFile, type LogFile } from './host/log-file.js';
import { createMetrics } from './surfaces/metrics.js';
import { removePidFile, writePidFile } from './host/pid-file.js';
import type { Store } from './store/store.js';
import { openStoreWaiting } from './store/open.js';
import { waitingHealth } from './surfaces/waiting-health.js';
import { deadLetterCounts, openSlotCache, type DeadLetterCounts, type SlotCache } from './store/caches.js';
import { openJournal } from './delivery/open-journal.js';
import type { Journal } from './delivery/journal.js';
import { holdYoungGeneration, releaseYoungGeneration } from './host/heap.js';
import { acquireLock } from './host/lock.js';
import { createIsolation } from './host/isolation.js';
import { createBotLimits, type BotLimits } from './host/bot-limits.js';
import { createStatusServer } from './surfaces/status-server.js';
import { fleetStatus } from './surfaces/fleet-status.js';
import type { RollSummary, Supervisor, TransitionEvent } from './lifecycle/supervisor.js';
import { isLoopbackHost, parseStatusAuth } from '../common/status-auth.js';
import { controlCommands, deadLetterKeeper, fleetReloader, openIngress, historyRefresher, restoredHistories, schedPolicyInForce, startBotsApi, startPeriodic, superviseFleet } from './wiring.js';
import { WORKER_ENTRY } from './lifecycle/child-process.js';
import { createWorkerRecorder, endZombies } from './host/zombies.js';
import { createCluster, type Cluster } from './cluster/cluster.js';
import { ownershipPort } from './cluster/ownership-port.js';

/** Errors of the host (not of our code) that the master survives wherever they surface. */
const HOST_ERRORS = new Set(['EPIPE', 'ECONNRESET', 'ENOSPC', 'EIO', 'EMFILE', 'ENFILE', 'EAGAIN', 'ENOMEM', 'EDQUOT']);

export { VERSION };

/** A running master, for the CLI and for tests that run it in-process. */
export interface MasterHandle {
  readonly logger: Logger;
  /** Resolves once the master's log lines so far are written (before a process exit), at most `ms` later. */
  flushLog(ms?: number): Promise<void>;
  /** Graceful stop: intake off, drain every worker, close everything. Resolves with the bots that were SIGKILLed. */
  stop(): Promise<string[]>;
  /** Restart one bot, or all in rolling batches (SIGUSR2); resolves with what was restarted and skipped. */
  restart(botId?: string): Promise<RollSummary>;
  /** Re-read the registry now (SIGHUP). */
  reload(): Promise<{ bots: number; invalid: number }>;
  /** SIGKILL every worker's process group at once (a second SIGINT). */
  forceKill(): void;
  /** The supervisor, for in-process observers (benchmarks): emits `transition` events. */
  readonly supervisor: Supervisor;
  readonly ports: { status: number; webhook: number | null };
}

/** Open the master's log: `logs/master.log` (size-capped), plus stdout when `echo`. */
function masterLogger(cfg: Config, logsDir: string, echo: boolean): { logger: Logger; file: LogFile } {
  const file = openLogFile(`${logsDir}/master.log`, cfg.logMaxBytes, cfg.logKeepFiles);
  const streams: pino.StreamEntry[] = [{ level: cfg.logLevel as pino.Level, stream: file }];
  if (echo) streams.push({ level: cfg.logLevel as pino.Level, stream: process.stdout });
  return { logger: createLogger(pino.multistream(streams), cfg.logLevel, { role: 'master' }), file };
}

/** The home, claimed: its lock (taken first: nothing of this home is touched while another master holds it), pid file and store. */
interface Home {
  p: ReturnType<typeof homePaths>;
  lock: { release(): void };
  store: Store;
  workersFile: string;
}

function claimHome(cfg: Config): Omit<Home, 'store'> {
  const p = homePaths(cfg.home);
  for (const dir of [p.data, p.logs, p.run]) fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const lock = acquireLock(path.join(p.run, 'master.lock'));
  try {
    writePidFile(p.pidFile);
    return { p, lock, workersFile: `${p.run}/workers.json` };
  } catch (err) {
    lock.release();
    throw err;
  }
}

/** The store (DATABASE_URL's PostgreSQL, waited for while it cannot be reached, `/health` saying why; else SQLite). Releases the home when it cannot open. */
async function openHomeStore(cfg: Config, home: Omit<Home, 'store'>, logger: Logger): Promise<Home> {
  const waiting = waitingHealth(cfg.statusHost, cfg.statusPort, home.p.portsFile, logger);
  try {
    return { ...home, store: await openStoreWaiting(cfg, logger, waiting.set) };
  } catch (err) {
    removePidFile(home.p.pidFile);
    home.lock.release();
    throw err;
  } finally {
    await waiting.close();
  }
}

/** The lifecycle and delivery wings over the home: isolation, the journal, the supervisor. */
interface Core {
  isolation: ReturnType<typeof createIsolation>;
  limits: BotLimits;
  journal: Journal;
  supervisor: Supervisor;
  secretTokenFor(botId: string): string;
  workerSchedPolicy: ReturnType<typeof schedPolicyInForce>;
  slots: SlotCache;
  deadLetters: DeadLetterCounts;
  /** This master as a member (PostgreSQL); null with SQLite: it owns every bot. `readHistory`: a bot's history read anew when it is taken. */
  cluster: Cluster | null; readHistory(botId: string): Promise<void>;
}

/** Before any worker starts: end what a crashed master left behind; then the journal and the supervisor. Releases the home when the journal cannot open. */
async function openCore(cfg: Config, home: Home, logger: Logger): Promise<Core> {
  const { p, store } = home;
  const secret = loadWebhookSecret(cfg.webhookSecret, p.secretFile);
  const secretTokenFor = (botId: string) => webhookSecretToken(secret, botId);
  await endZombies(home.workersFile, WORKER_ENTRY, logger);
  const recordWorkers = createWorkerRecorder(home.workersFile);
  const workerSchedPolicy = schedPolicyInForce(cfg, logger);
  const slots = await openSlotCache(store);
  const isolation = createIsolation({
    setting: cfg.workerIsolation, home: cfg.home, uidBase: cfg.workerUidBase, logger, allowUnisolatedChildren: cfg.allowUnisolatedChildProcesses, ...(cfg.botsDataDir ? { botsDir: path.resolve(cfg.home, cfg.botsDataDir) } : {}),
    uidSlot: (botId) => slots.uidSlot(botId), allSlots: () => slots.allSlots(),
  });
  const deadLetters = deadLetterCounts(store);
  const timing = { leaseMs: cfg.clusterLeaseMs, renewDeadlineMs: cfg.clusterRenewDeadlineMs, retryMs: cfg.clusterRetryMs };
  const cluster = store.cluster ? createCluster({ store: store.cluster, memberId: cfg.memberId, timing, logger }) : null;
  const keepDeadLetter = deadLetterKeeper(store, logger, deadLetters.refresh, cluster ?? undefined);
  const journal = await openJournal({
    store, sync: cfg.journalSync, maxPending: cfg.journalMaxPending, window: cfg.deliveryWindow,
    dedupWindowMs: cfg.dedupWindowMs, logger, onDeadLetter: keepDeadLetter, ...(cluster ? { epochOf: (id: string) => cluster.epochOf(id) } : {}),
  }).catch((err: unknown) => {
    isolation.release();
    void store.close();
    home.lock.release();
    throw err;
  });
  holdYoungGeneration(); // again: starting the journal's writer thread resets V8's flags (host/heap.ts)
  const leftovers = isolation.endLeftovers();
  if (leftovers > 0) logger.warn({ processes: leftovers }, 'ended processes left under bot uids by an earlier master');
  const limits = createBotLimits({ home: cfg.home, memoryBytes: cfg.maxMemoryPerWorkerMb * 1024 * 1024, processes: cfg.maxProcessesPerBot, logger });
  const histories = await restoredHistories(store, logger);
  const supervisor = superviseFleet({ cfg, logsDir: p.logs, logger, store, histories, isolation, limits, journal, secretTokenFor, recordWorkers, keepDeadLetter, ...(cluster ? { cluster } : {}) });
  return { isolation, limits, journal, supervisor, secretTokenFor, workerSchedPolicy, slots, deadLetters, cluster, readHistory: historyRefresher(store, histories, logger) };
}

/** The surfaces wing, listening: metrics, the webhook server (when any bot may use webhooks), the status server, the control socket. */
interface Surfaces {
  webhook: Awaited<ReturnType<typeof openIngress>>;
  statusServer: ReturnType<typeof createStatusServer>;
  control: Awaited<ReturnType<typeof startControlServer>>;
  fleet: ReturnType<typeof fleetReloader>;
  ports: { status: number; webhook: number | null };
  /** Intake off: the webhook server answers 503 from now on. */
  drain(): void;
  setBotsApi(api: ReturnType<typeof startBotsApi>): void;
}

async function openSurfaces(cfg: Config, home: Home, core: Core, logger: Logger, startedAt: number): Promise<Surfaces> {
  const { store } = home;
  const { supervisor, journal, isolation, workerSchedPolicy } = core;
  const memoryCapBytes = cfg.maxMemoryPerWorkerMb * 1024 * 1024;
  // Per-bot uids: each bot's uid slot is allocated before it is reconciled (a fork never waits on the store).
  const fleet = fleetReloader(store, supervisor, (ids) => (isolation.status.uid ? core.slots.ensure(ids) : Promise.resolve()));
  let botsApi: ReturnType<typeof startBotsApi> = null;
  const metrics = createMetrics({
    status: () => supervisor.status(), totals: () => supervisor.totals(), deadLetters: () => core.deadLetters.current(),
    memoryCapBytes, journal: () => journal.statsByBot(), configReload: () => fleet.health(botsApi), ...(core.cluster ? { cluster: () => core.cluster!.gauges() } : {}),
  });
  let draining = false;
  const webhook = await openIngress(cfg, supervisor, journal, core.secretTokenFor, () => draining, metrics.observeWebhook);
  if (webhook) releaseYoungGeneration();
  let webhookUp = false;
  const status = () => fleetStatus(supervisor.status(), { pid: process.pid, uptimeMs: Date.now() - startedAt, mode: cfg.mode, version: VERSION, capacity: supervisor.capacity(), workerSchedPolicy, isolation: { ...isolation.status, cgroups: core.limits.status.cgroups } });
  const commands = controlCommands({ supervisor, store, journal, logger, status, reload: fleet.reload, onDeadLettersChanged: core.deadLetters.refresh });
  const statusServer = createStatusServer({
    status, webhookStats: () => ({ server: webhook?.webhookStats() ?? {}, journal: journal.allStats(), deliveryLatency: journal.deliveryLatency() }),
    metrics: { contentType: metrics.registry.contentType, metrics: metrics.scrape, release: metrics.release }, cluster: core.cluster ? () => core.cluster!.status() : null,
    unhealthy: () => {
      if (webhook && !webhookUp) return 'webhook server is not listening';
      const clusterProblem = core.cluster?.problem();
      if (clusterProblem) return clusterProblem;
      // A full disk or a database down: every webhook answers 503 meanwhile.
      const storeProblem = journal.writeProblem() ?? fleet.storeProblem();
      if (storeProblem) return storeProblem;
      const sealed = fleet.undecryptable();
      return sealed.length > 0 ? `the encryption key cannot decrypt the token of ${sealed.length} enabled bot(s): ${sealed.slice(0, 5).join(', ')}` : null;
    },
    // Always authenticated (but /health): a bot on this host must get nothing from the master's ports.
    auth: parseStatusAuth(cfg.statusAuth ?? `bearer:${loadStatusToken(home.p.statusTokenFile)}`),
    ...(isLoopbackHost(cfg.statusHost) ? { loopbackOnly: true } : {}),
    page: {
      describe: (botId) => supervisor.describe(botId), memoryCapBytes,
      restartWindowMax: cfg.maxRestartsPerHour, maxClients: cfg.statusMaxClients,
      // The control socket's own command: the page restarts a bot exactly as `botfleet restart <bot>` does.
      ...(cfg.statusActions ? { restart: (botId: string) => commands({ cmd: 'restart', botId }) } : {}),
    },
  });
  supervisor.on('transition', (e: TransitionEvent) => statusServer.page?.publishState(e));
  const statusPort = Number(new URL(await statusServer.listen({ host: cfg.statusHost, port: cfg.statusPort })).port);
  let webhookPort: number | null = null;
  if (webhook) {
    webhookPort = Number(new URL(await webhook.listen({ host: cfg.webhookListenHost, port: cfg.webhookPort })).port);
    webhookUp = true;
  }
  fs.writeFileSync(home.p.portsFile, JSON.stringify({ status: statusPort, webhook: webhookPort }) + '\n');
  const control = await startControlServer(home.p.socket, commands);
  return { webhook, statusServer, control, fleet, ports: { status: statusPort, webhook: webhookPort }, drain: () => (draining = true), setBotsApi: (api) => (botsApi = api) };
}

/**
 * Start a master in this process. @throws BotfleetError when the home cannot be used
 * (already running, bad key), before any worker starts.
 */
export async function startMaster(cfg: Config, opts: { echoLogs?: boolean } = {}): Promise<MasterHandle> {
  const startedAt = Date.now();
  const claimed = claimHome(cfg);
  const { logger, file: logFile } = masterLogger(cfg, claimed.p.logs, opts.echoLogs ?? false);
  const home = await openHomeStore(cfg, claimed, logger);
  const core = await openCore(cfg, home, logger);
  const surfaces = await openSurfaces(cfg, home, core, logger, startedAt);
  const { supervisor } = core;
  const reload = surfaces.fleet.reload;
  await reload();
  await core.cluster?.start(ownershipPort(core.cluster, supervisor, core.journal, core.readHistory)); // this member's share is taken (after the bots are known)
  const stopPeriodic = startPeriodic(cfg, surfaces.fleet, supervisor, logger, surfaces.webhook !== null);
  const botsApi = startBotsApi(cfg, home.store, logger, reload);
  surfaces.setBotsApi(botsApi);
  logger.info({ pid: process.pid, home: cfg.home, statusPort: surfaces.ports.status, webhookPort: surfaces.ports.webhook, capacity: supervisor.capacity(), workerSchedPolicy: core.workerSchedPolicy }, 'master started');
  let stopping: Promise<string[]> | null = null;
  const stop = () => (stopping ??= (async () => {
    logger.info('master stopping: intake off, draining workers');
    stopPeriodic();
    botsApi?.stop();
    surfaces.drain();
    core.cluster?.stopTaking();
    const killed = await supervisor.stopAll();
    await core.cluster?.leave(); // the bots released: the others take them at once
    await closeAll(home, core, surfaces, logger);
    logger.info({ killed }, 'master stopped');
    core.isolation.release();
    core.limits.close();
    home.lock.release();
    await logFile.flush(); // the stop line reaches master.log before the process exits
    return killed;
  })());
  return { logger, flushLog: (ms) => logFile.flush(ms), stop, reload, restart: (botId) => supervisor.restart(botId), forceKill: () => supervisor.forceKill(), supervisor, ports: surfaces.ports };
}

/** After the workers are stopped: the servers, the registry, the journal, and the home's run files. */
async function closeAll(home: Home, core: Core, s: Surfaces, logger: Logger): Promise<void> {
  // Every in-flight webhook call has its answer now; keep-alive connections would
  // otherwise hold close() for the keep-alive timeout.
  const closingWebhook = s.webhook?.close();
  s.webhook?.server.closeAllConnections();
  await closingWebhook;
  s.statusServer.page?.close(); // open event streams would hold close()
  await s.statusServer.close();
  s.control.close();
  await home.store.close().catch((err: unknown) => logger.error({ err: errorMessage(err) }, 'store close failed'));
  await core.journal.close().catch((err: unknown) => logger.error({ err: errorMessage(err) }, 'journal close failed'));
  const { p } = home;
  for (const f of [p.socket, tokenFileOf(p.socket), p.portsFile, home.workersFile]) fs.rmSync(f, { force: true });
  removePidFile(p.pidFile);
}

/** Run a master until a signal stops it; exits the process. Used by `botfleet start`. */
export async function runMaster(cfg: Config): Promise<void> {
  // A closed stdout (a gone pipe reader, PM2, a FIFO): EPIPE on the next log line must not end the master.
  process.stdout.on('error', () => undefined);
  process.stderr.on('error', () => undefined);
  const master = await startMaster(cfg, { echoLogs: true });
  process.on('uncaughtException', (err: NodeJS.ErrnoException) => {
    // Host faults that reach here (a stream without a listener) are survived; anything else is a bug: logged, then exit.
    if (err.code && HOST_ERRORS.has(err.code)) return void master.logger.error({ err: errorMessage(err), code: err.code }, 'host error survived');
    master.logger.fatal({ err: String(err.stack ?? err) }, 'uncaught exception: master exiting');
    master.forceKill();
    void master.flushLog(1000).then(() => process.exit(1));
  });
  let interrupts = 0;
  const graceful = (sig: string) => {
    master.logger.info({ signal: sig }, 'signal received');
    void master.stop().then(() => process.exit(0), (err: unknown) => {
      master.logger.error({ err: errorMessage(err) }, 'stop failed');
      void master.flushLog(1000).then(() => process.exit(1));
    });
  };
  process.on('SIGTERM', () => graceful('SIGTERM'));
  process.on('SIGINT', () => {
    if (++interrupts > 1) {
      master.logger.warn('second SIGINT: forced stop');
      master.forceKill();
      process.exit(130);
    }
    graceful('SIGINT');
  });
  process.on('SIGUSR2', () => {
    master.logger.info('SIGUSR2: rolling restart');
    master.restart().catch((err: unknown) => master.logger.error({ err: errorMessage(err) }, 'rolling restart failed'));
  });
  process.on('SIGHUP', () => {
    master.logger.info('SIGHUP: registry reload');
    master.reload().catch((err: unknown) => master.logger.error({ err: errorMessage(err) }, 'registry reload failed: the fleet keeps its configurations'));
  });
}

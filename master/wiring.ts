/**
 * The master's wiring, apart from its entry (main.ts): the supervisor joined to the
 * registry, the isolation layer and the journal; the control socket's commands.
 * Each function only joins parts; the behaviour lives in the wings.
 */
import os from 'node:os';
import type { Update } from 'node-telegram-bot-api';
import type { Logger } from 'pino';
import { assertNever, ErrorCodes, errorMessage, fail } from '../common/errors.js';
import fs from 'node:fs';
import { listSetting, type Config } from '../config/load.js';
import type { WebhookServer, WebhookServerOptions } from '../webhook-server/server.js';
import { batchSchedulingAvailable } from './lifecycle/child-process.js';
import { stdoutLines } from './host/log-file.js';
import type { ControlHandler, ControlRequest } from './surfaces/control-server.js';
import type { Store, StoredHistory } from './store/store.js';
import { replayDeadLetters } from './delivery/replay.js';
import type { Journal } from './delivery/journal.js';
import { canChangeUser, type Isolation } from './host/isolation.js';
import { handlerWarning } from './host/bot-paths.js';
import { isBuiltinHandler } from '../worker/handlers/index.js';
import type { BotLimits } from './host/bot-limits.js';
import { availableMemoryBytes } from './host/meminfo.js';
import { probeExecTools } from './host/privileges.js';
import { createSupervisor, type RestoredHistory, type Supervisor } from './lifecycle/supervisor.js';
import { startBotsApiPoller, type BotsApiPoller } from './store/bots-api-source.js';
import type { FleetReloader } from './lifecycle/fleet-reload.js';
import type { Cluster } from './cluster/cluster.js';
export { fleetReloader, type FleetReloader } from './lifecycle/fleet-reload.js';

/** Monotonic ms (this process) to wall-clock ms, and back: restart histories are kept in wall-clock time. */
const toWall = (mono: number) => Date.now() - (performance.now() - mono);
const toMono = (wall: number) => performance.now() - (Date.now() - wall);

/** A kept history on this process's clock. */
const restored = (h: StoredHistory): RestoredHistory => ({ history: { restarts: h.restarts.map(toMono), consecutive: h.consecutive }, quarantinedUntil: h.quarantinedUntil === null ? null : toMono(h.quarantinedUntil), doNotRestart: h.doNotRestart, reason: h.reason ?? null });

/** Restart histories from the store, on this process's clock; none (logged) when they cannot be read. */
export async function restoredHistories(store: Store, logger: Logger): Promise<Map<string, RestoredHistory>> {
  const out = new Map<string, RestoredHistory>();
  try {
    for (const [botId, h] of await store.history.loadAll()) out.set(botId, restored(h));
  } catch (err) {
    logger.warn({ err: errorMessage(err) }, 'could not read restart histories');
  }
  return out;
}

/**
 * A cluster's new owner reads the bot's history as the last owner kept it (its restart window and
 * quarantine follow the bot) into `histories`, which the lifecycle's ownership-gained restores.
 * A failed read is logged: the history read at start stays.
 */
export function historyRefresher(store: Store, histories: Map<string, RestoredHistory>, logger: Logger): (botId: string) => Promise<void> {
  return async (botId) => {
    try {
      const h = await store.history.load(botId);
      if (h) histories.set(botId, restored(h));
      else histories.delete(botId);
    } catch (err) {
      logger.warn({ botId, err: errorMessage(err) }, "could not read the bot's restart history: the one read at start is used");
    }
  };
}

/** What the fleet's supervisor is joined to. */
export interface FleetParts {
  cfg: Config;
  logsDir: string;
  logger: Logger;
  store: Store;
  /** Restart histories an earlier master kept (restoredHistories). */
  histories: Map<string, RestoredHistory>;
  isolation: Isolation;
  /** The kernel's per-bot limits (cgroups, RLIMIT_NPROC). */
  limits: BotLimits;
  journal: Journal;
  secretTokenFor(botId: string): string;
  /** Writes run/workers.json (zombie cleanup after a master crash). @throws on a write error */
  recordWorkers(live: Array<{ pid: number; botId: string }>): void;
  keepDeadLetter(botId: string, updateId: number, update: Update | null, reason: string): void;
  /** This master as a cluster member (who runs each bot, the lease's deadline, bot epochs, the 409 re-check); absent with SQLite (a cluster of one). */
  cluster?: ClusterView;
}

/** What the lifecycle and the writes about bots need of the cluster (master/cluster/cluster.ts). */
export type ClusterView = Pick<Cluster, 'ownerOf' | 'leaseUntil' | 'memberOf' | 'epochOf' | 'recheck'>;

/** The fence of a write about `botId`: its bot epoch in a cluster (null: not owned here, write nothing), undefined with one machine. */
const fenceOf = (cluster: Pick<ClusterView, 'epochOf'> | undefined, botId: string): number | null | undefined => cluster?.epochOf(botId);

/** The supervisor's view of the cluster. */
const clusterDeps = (c: ClusterView) => ({
  ownerOf: (id: string) => c.ownerOf(id), leaseUntil: () => c.leaseUntil(), memberOf: (id: string) => c.memberOf(id), recheckOwner: (id: string) => c.recheck(id),
});

/** The supervisor of the fleet: per-bot isolation, restart histories kept in the registry, dead letters and journal. */
export function superviseFleet(f: FleetParts): Supervisor {
  const { cfg, logsDir, logger, store, isolation, limits, journal, secretTokenFor, recordWorkers, keepDeadLetter } = f;
  const saving = new Map<string, Promise<void>>();
  return createSupervisor({
    config: cfg, logger, cores: os.availableParallelism(), logsDir, secretTokenFor, ...(f.cluster ? clusterDeps(f.cluster) : {}),
    ...(cfg.logToStdout ? { echoWorkerLine: stdoutLines() } : {}),
    isolationFor(botId, spec) {
      const iso = isolation.forBot(botId, spec);
      return { ...iso, ...limits.forFork(botId, iso.uid !== undefined) };
    },
    memoryOf: (botId) => limits.memoryBytes(botId), pidsOf: (botId) => limits.pidsOf(botId), availableMemory: () => availableMemoryBytes(),
    dataUsage: (botId, stopAbove) => limits.dataBytes(botId, () => isolation.dataDir(botId), stopAbove),
    onRemoved(botId) {
      // A removed bot's data goes with it (its processes ended at its worker's exit): `bots rm` is the operator's word.
      if (isolation.removeData(botId)) logger.info({ botId }, 'data directory of a removed bot deleted');
      limits.remove(botId);
    },
    onWorkerExit(botId) {
      const n = isolation.afterExit(botId, () => limits.pidsOf(botId));
      if (n > 0) logger.warn({ botId, processes: n }, "ended processes left under the bot's uid");
      if (!limits.oomKilledSinceFork(botId)) return;
      logger.warn({ botId }, "the kernel's OOM killer acted in the bot's cgroup: over its memory cap");
      return 'memory';
    },
    histories: f.histories,
    onHistory(botId, h, until, doNotRestart, reason) {
      const kept = { restarts: h.restarts.map(toWall), consecutive: h.consecutive, quarantinedUntil: until === null ? null : toWall(until), doNotRestart, reason: reason ?? null };
      const fence = fenceOf(f.cluster, botId);
      if (fence === null) return; // a cluster's bot another member owns now: its history is that member's to write
      // One bot's saves in order (each replaces the last): a later decision never lands before an earlier one.
      const next = (saving.get(botId) ?? Promise.resolve()).then(async () => {
        if (!(await store.history.save(botId, kept, fence))) logger.warn({ botId, fence }, 'restart history not kept: another member took the bot (a stale epoch)');
      }).catch((err: unknown) => {
        logger.warn({ botId, err: errorMessage(err) }, 'could not keep the restart history');
      });
      saving.set(botId, next);
      void next.then(() => saving.get(botId) === next && saving.delete(botId));
    },
    onDeadLetter: keepDeadLetter,
    journal,
    onPids: (live) => {
      try {
        recordWorkers(live);
      } catch (err) {
        // Bookkeeping for zombie cleanup must never take the master down.
        logger.warn({ err: errorMessage(err) }, 'could not record live workers');
      }
    },
  });
}

/** What the control socket's commands reach. */
export interface ControlParts {
  supervisor: Supervisor;
  store: Store;
  journal: Journal;
  logger: Logger;
  status(): unknown;
  reload(): Promise<{ bots: number; invalid: number }>;
  /** Told when the dead-letter queue changed (its counts for /metrics). */
  onDeadLettersChanged?(): void;
}

/** The control socket's commands (surfaces/control-server.ts answers with their result or error code). */
export function controlCommands(c: ControlParts): ControlHandler {
  const { supervisor, store, journal, logger, status, reload } = c;
  return async (req: ControlRequest) => {
    switch (req.cmd) {
      case 'status': return status();
      case 'describe': return supervisor.describe(String(req.botId));
      case 'reload': return reload();
      case 'restart':
        logger.info({ botId: req.botId ?? null }, req.botId ? 'operator restart' : 'rolling restart requested');
        return supervisor.restart(req.botId);
      case 'dlq-replay': {
        const configured = new Set(supervisor.status().map((w) => w.botId));
        return replayDeadLetters({
          deadLetters: store.deadLetters, logger,
          replay: (botId, u) => (configured.has(botId) ? journal.accept(botId, u, true) : Promise.resolve('unknown-bot')),
        }, req).finally(() => c.onDeadLettersChanged?.());
      }
      case 'dlq-take': {
        const w = supervisor.status().find((x) => x.botId === req.botId);
        if (w && w.state === 'running') throw fail(ErrorCodes.BAD_INPUT, `bot "${req.botId}" is running: its journal is being delivered (disable it first)`);
        const taken = journal.take(String(req.botId));
        logger.info({ botId: req.botId, taken }, 'journaled updates moved to the dead-letter queue by an operator');
        return { taken };
      }
      default:
        return assertNever(req); // CONTROL_COMMANDS and this switch cannot drift apart
    }
  };
}

/** The scheduling policy workers get: SCHED_BATCH needs util-linux chrt, probed once here before any fork. */
export function schedPolicyInForce(cfg: Config, logger: Logger): Config['workerSchedPolicy'] {
  probeExecTools(); // setpriv, prlimit, choom: probed now, not at the first fork
  if (cfg.workerSchedPolicy !== 'batch' || batchSchedulingAvailable()) return cfg.workerSchedPolicy;
  // Expected off Linux (SCHED_BATCH is a Linux policy); on Linux it means chrt is missing or not allowed.
  if (process.platform === 'linux') logger.warn('WORKER_SCHED_POLICY=batch needs util-linux chrt, which cannot run here: workers run under the default policy');
  else logger.info({ platform: process.platform }, 'SCHED_BATCH is Linux-only: workers run under the default policy');
  return 'other';
}

/**
 * Keeps a dead-lettered update in the store's dead-letter queue; a failed write is logged, never thrown. `kept` follows each write.
 * In a cluster the write carries the bot's epoch and is refused when stale.
 */
export function deadLetterKeeper(store: Store, logger: Logger, kept: () => void = () => undefined, cluster?: Pick<ClusterView, 'epochOf'>): FleetParts['keepDeadLetter'] {
  return (botId, updateId, update, reason) => {
    const fence = fenceOf(cluster, botId);
    if (fence === null) return void logger.warn({ botId, updateId }, 'dead letter not kept: another member owns the bot now (it delivers the update again)');
    // A malformed polled update comes without its body (it may not serialize): kept by id, so it is listed.
    void store.deadLetters.add(botId, update ?? ({ update_id: updateId } as Update), reason, Date.now(), fence).then((ok) => {
      if (!ok) logger.warn({ botId, updateId }, 'dead letter not kept: another member took the bot (a stale epoch)');
      kept();
    }, (err: unknown) => {
      logger.error({ botId, updateId, err: errorMessage(err) }, 'could not keep the dead letter');
    });
  };
}

/**
 * The webhook server when any bot may use webhooks (MODE=webhook or WEBHOOK_HOST set), else null; updates go to the journal.
 * It is imported only then: fastify and its schema compilers cost ~13 MB of RSS (http-routes.ts), which a polling fleet's master does not pay.
 */
export async function openIngress(cfg: Config, supervisor: Supervisor, journal: Journal, secretTokenFor: (botId: string) => string, draining: () => boolean,
  onResponse?: WebhookServerOptions['onResponse']): Promise<WebhookServer | null> {
  if (cfg.mode !== 'webhook' && cfg.webhookHost === undefined) return null;
  const { createWebhookServer } = await import('../webhook-server/server.js');
  return createWebhookServer({
    target: { isWebhookBot: (id) => supervisor.isWebhookBot(id), deliver: (id, u, raw) => (supervisor.isWebhookBot(id) ? journal.accept(id, u, false, raw) : Promise.resolve('unknown-bot')) },
    secretTokenFor, draining, onResponse,
    allowedSources: listSetting(cfg.webhookAllowedSources), trustProxy: listSetting(cfg.webhookTrustProxy),
    ingress: { requestTimeoutMs: cfg.webhookRequestTimeoutMs, headersTimeoutMs: Math.ceil((cfg.webhookRequestTimeoutMs * 2) / 3), maxConnections: cfg.webhookMaxConnections, maxConnectionsPerSource: cfg.webhookMaxConnectionsPerSource },
    ...(cfg.webhookSslCert && cfg.webhookSslKey ? { https: { cert: fs.readFileSync(cfg.webhookSslCert), key: fs.readFileSync(cfg.webhookSslKey) } } : {}),
  });
}

/**
 * The master's periodic work: the registry poll (REGISTRY_POLL_MS; reload on a change) and,
 * with a webhook server, the registration check (WEBHOOK_CHECK_MS; one at a time, never
 * overlapping: another tool may overwrite a bot's webhook). @returns stop
 */
export function startPeriodic(cfg: Config, fleet: FleetReloader, supervisor: Supervisor, logger: Logger, webhooks: boolean): () => void {
  const stopWatch = fleet.watch(logger, cfg.registryPollMs);
  let checkingWebhooks = false;
  const webhookCheck = webhooks ? setInterval(() => {
    if (checkingWebhooks) return;
    checkingWebhooks = true;
    void supervisor.checkWebhooks().finally(() => (checkingWebhooks = false));
  }, cfg.webhookCheckMs) : null;
  return () => {
    stopWatch();
    if (webhookCheck) clearInterval(webhookCheck);
  };
}

/**
 * The warning `bots add` prints, for bots the bots API added or changed: the bot's own uid
 * cannot read its handler (the fork path will quarantine it with reason `config`).
 */
async function warnUnreadableHandlers(cfg: Config, store: Store, ids: readonly string[], logger: Logger): Promise<void> {
  if (ids.length === 0 || !canChangeUser()) return;
  const wanted = new Set(ids);
  for (const b of await store.bots.list()) {
    if (!wanted.has(b.id)) continue;
    const warning = handlerWarning(b.handler, cfg.home, true, isBuiltinHandler);
    if (warning) logger.warn({ botId: b.id, handler: b.handler, warning }, 'bots API bot cannot run as configured');
  }
}

/** At most this many bot ids or rejected entries named in one log line (the rest are counted). */
const LOGGED_IDS = 20;
const someOf = (ids: readonly string[]) => (ids.length > LOGGED_IDS ? [...ids.slice(0, LOGGED_IDS), `... ${ids.length - LOGGED_IDS} more`] : [...ids]);

/**
 * With BOTS_API_URL: poll the bots API, apply a changed list to the registry and reload
 * the fleet. A failure is logged once (and again when its cause changes), the last
 * good list stays in force. @returns the poller, or null without BOTS_API_URL
 */
export function startBotsApi(cfg: Config, store: Store, logger: Logger, reload: () => Promise<unknown>): BotsApiPoller | null {
  if (cfg.botsApiUrl === undefined) return null;
  let lastFailure: string | null = null;
  const poller = startBotsApiPoller({
    url: cfg.botsApiUrl, bearer: cfg.botsApiToken, intervalMs: cfg.botsApiPollMs, store: store.bots,
    events: {
      onApplied(r, rejected) {
        for (const line of someOf(rejected)) logger.warn({ entry: line }, 'bots API entry rejected');
        if (r.shadowed.length > 0) logger.warn({ bots: someOf(r.shadowed) }, 'bots API lists ids held by bots added with the CLI: the local ones are kept');
        if (r.added.length + r.changed.length + r.removed.length === 0) return;
        logger.info({ added: someOf(r.added), changed: someOf(r.changed), removed: someOf(r.removed) }, 'bots API list applied');
        void warnUnreadableHandlers(cfg, store, [...r.added, ...r.changed], logger).catch(() => undefined);
        // A failure is the store's, not the API's: kept as a failed reload (botfleet_config_last_reload_success 0); the next reload (SIGHUP, `reload`, a registry change) applies the list.
        reload().catch((err: unknown) => logger.error({ err: errorMessage(err) }, 'registry reload failed after the bots API list was applied'));
      },
      onFailure(message) {
        if (message !== lastFailure) logger.warn({ err: message }, 'bots API fetch failed: the last good list stays in force');
        lastFailure = message;
      },
      onRecovered() {
        lastFailure = null;
        logger.info('bots API answers again');
      },
    },
  });
  return poller;
}

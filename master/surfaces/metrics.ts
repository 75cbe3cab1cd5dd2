/**
 * Prometheus metrics (prom-client), `botfleet_` prefix, label `bot` = the bot's id
 * (never its token). Per-bot series are filled from the supervisor at scrape time, so
 * every configured bot appears, stopped and quarantined ones included, and nothing is
 * tracked twice. Counters count since the master started and survive worker restarts
 * (lifecycle/counters.ts). The master's own process metrics keep prom-client's standard
 * `process_*`/`nodejs_*` names, so stock Node.js dashboards work.
 * The series and their meaning: docs/metrics.md (generated from this file by `npm run docs`).
 */
import fsp from 'node:fs/promises';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import client from 'prom-client';
import { EXIT_REASONS, type WorkerStatus } from '../lifecycle/child.js';
import type { BotTotals } from '../lifecycle/counters.js';
import { VERSION } from '../../common/version.js';
import type { JournalStats } from '../delivery/journal.js';
import { HANDLER_BUCKETS_S } from '../../worker/protocol.js';
import type { ClusterGauges } from '../cluster/cluster.js';
import { TAKE_CAUSES } from '../cluster/plan.js';
import { BodyBuilder, BodyMemory, botLabels, escapeLabel, histogramFamily, KeptText, perBotFamily, renderFamily, type TextFamily } from './metrics-text.js';

/** Buckets (seconds) of the webhook request-duration histogram: the journal commit is most of it. */
export const WEBHOOK_BUCKETS_S: readonly number[] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

/** Where the series come from; each is read once per scrape. */
export interface MetricSources {
  status(): WorkerStatus[];
  totals(): Array<[string, BotTotals]>;
  /** Dead letters by bot (`botfleet_dead_letters`, 0 for configured bots with none). */
  deadLetters?(): Map<string, number>;
  /** `botfleet_worker_memory_cap_bytes`. */
  memoryCapBytes?: number;
  /** The journal's counters by bot. */
  journal?(): Array<[string, JournalStats]>;
  /** The last configuration reload: whether it succeeded, and wall-clock ms of the last success (null: none yet). */
  configReload?(): { success: boolean; lastSuccessMs: number | null };
  /** This master as a cluster member (PostgreSQL); absent with SQLite (no `botfleet_cluster_*` series). */
  cluster?(): ClusterGauges;
}

/** The scrape, and the webhook server's observer (its port: `onResponse`). */
export interface Metrics {
  /** prom-client's part (the master's process metrics, build info, the webhook's series); its content type is the scrape's. */
  registry: client.Registry;
  /**
   * One scrape of `registry` that leaves the event loop free: each family of ours is
   * collected in an event-loop turn of its own (I/O is served between them), all from
   * one snapshot of the fleet taken for the scrape. The text as UTF-8 bytes (metrics-text.ts, BodyBuilder).
   */
  scrape(): Promise<Buffer>;
  /**
   * A body `scrape` gave is no longer read (its response ended): once every caller it was
   * given to released it, the next scrape writes into its memory. A body never released
   * is left to the garbage collector. Each 2.5 MB body of a 1000-bot scrape lived through
   * the scrape's scavenges into the old generation and stayed until a full collection: 52 MB
   * of them were held at 1000 real idle workers after 40 scrapes, the master's RSS 106 -> 177 MB.
   */
  release(body: string | Buffer): void;
  /** One webhook request answered with `code` after `seconds`; `bot` is null for a path that names no webhook bot. */
  observeWebhook(bot: string | null, code: number, seconds: number): void;
}

/** Sampling period of `nodejs_eventloop_lag_*` (ms; a stall is still seen whole: the sample after it waited that long). */
const EVENT_LOOP_PRECISION_MS = 1000;
/** prom-client's own lag histogram, parked (its timer would wake the master for nothing): {@link loopLagPastSampling} samples instead (ms, the largest timer). */
const PARKED_MS = 2_147_483_647;

export function createMetrics(src: MetricSources): Metrics {
  const registry = new client.Registry();
  // Every series of one scrape reads the same snapshot, taken once and dropped when the scrape ends.
  const snap = snapshots();
  const status = snap.of(src.status);
  const totals = snap.of(src.totals);
  const label = snap.of(botLabels);
  const bot = (id: string) => label()(id);
  // The event-loop lag histogram samples every second, not prom-client's default 10 ms: that timer alone woke an
  // idle master 100 times a second (strace at 300 idle bots: 230 epoll returns a second, 64 after at 200 ms; at 600
  // idle bots the master's CPU went from ~2.9 % of a core to ~2.4 %). At 200 ms it was still 5 of the ~12 timer
  // wake-ups a second of an idle master (strace at 300 bots, after the heartbeats rode on the long polls).
  client.collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: PARKED_MS });
  // prom-client exports these three gauges with a `_total` suffix, which `promtool check metrics` rejects.
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) registry.removeSingleMetric(name);
  for (const replace of [openFdsOffLoop, loopLagPastSampling]) replace(registry);
  const families = botFamilies(src, { status, totals, journal: snap.of(() => src.journal?.() ?? []) }, bot);
  if (src.memoryCapBytes !== undefined) {
    new client.Gauge({ name: 'botfleet_worker_memory_cap_bytes', help: 'the RSS cap of each bot (MAX_MEMORY_PER_WORKER_MB)', registers: [registry] }).set(src.memoryCapBytes);
  }
  const configReload = src.configReload;
  if (configReload) {
    new client.Gauge({ name: 'botfleet_config_last_reload_success', help: '1 when the last configuration reload (registry, and the bots API with BOTS_API_URL) succeeded', registers: [registry],
      collect() { this.set(configReload().success ? 1 : 0); } });
    new client.Gauge({ name: 'botfleet_config_last_reload_success_timestamp_seconds', help: 'Unix time of the last successful configuration reload (0: none since the master started)', registers: [registry],
      collect() { this.set((configReload().lastSuccessMs ?? 0) / 1000); } });
  }
  if (src.cluster) clusterMetrics(registry, src.cluster);
  new client.Gauge({ name: 'botfleet_build_info', help: 'always 1; the labels say what runs', labelNames: ['version', 'node'], registers: [registry] }).set({ version: VERSION, node: process.version }, 1);
  const requests = new client.Counter({ name: 'botfleet_webhook_requests_total', help: 'webhook requests by bot and HTTP status answered (bot="" for a path naming no webhook bot)', labelNames: ['bot', 'code'], registers: [registry] });
  const duration = new client.Histogram({ name: 'botfleet_webhook_request_duration_seconds', help: 'time from a webhook request\'s arrival to its answer, seconds (all bots)', buckets: [...WEBHOOK_BUCKETS_S], registers: [registry] });
  let lastBytes = 0;
  const memory = new BodyMemory();
  /** prom-client's part, then each per-bot family in an event-loop turn of its own (I/O is served between them). */
  const scrapeOnce = async (): Promise<Buffer> => {
    const body = new BodyBuilder(lastBytes + (lastBytes >> 3), memory.take());
    body.text(await registry.metrics());
    for (const f of families) {
      await new Promise<void>((r) => setImmediate(r));
      renderFamily(f, body);
    }
    const out = body.finish();
    lastBytes = out.length;
    return out;
  };
  let scraping: Promise<Buffer> | null = null;
  return {
    registry,
    // Concurrent scrapes share one: a second Prometheus (or a retry) costs nothing more.
    scrape: () => (scraping ??= scrapeOnce().finally(() => {
      scraping = null;
      snap.drop();
    })).then((body) => memory.hold(body)),
    release: (body) => memory.release(body),
    observeWebhook(bot, code, seconds) {
      requests.inc({ bot: bot ?? '', code: String(code) });
      duration.observe(seconds);
    },
  };
}

/**
 * prom-client's `nodejs_eventloop_lag_{min,max,mean,stddev,p50,p90,p99}_seconds` (same names and help), as the
 * delay past the sampling period: Node's histogram (perf_hooks.monitorEventLoopDelay) records the whole time between
 * two samples, so at the 1 s period an idle master showed ~1 s (measured: min 999.3 ms, p50 999.8 ms idle).
 * Each scrape reads and resets it, as prom-client does.
 */
function loopLagPastSampling(registry: client.Registry): void {
  const h = monitorEventLoopDelay({ resolution: EVENT_LOOP_PRECISION_MS });
  h.enable();
  const past = (ns: number) => (Number.isFinite(ns) ? Math.max(0, ns / 1e6 - EVENT_LOOP_PRECISION_MS) / 1000 : 0);
  const read: Array<[string, string, () => number]> = [
    ['min', 'The minimum recorded event loop delay.', () => past(h.min)], ['max', 'The maximum recorded event loop delay.', () => past(h.max)],
    ['mean', 'The mean of the recorded event loop delays.', () => past(h.mean)],
    ['stddev', 'The standard deviation of the recorded event loop delays.', () => (Number.isFinite(h.stddev) ? h.stddev / 1e9 : 0)],
    ['p50', 'The 50th percentile of the recorded event loop delays.', () => past(h.percentile(50))],
    ['p90', 'The 90th percentile of the recorded event loop delays.', () => past(h.percentile(90))],
    ['p99', 'The 99th percentile of the recorded event loop delays.', () => past(h.percentile(99))],
  ];
  let left = 0; // the gauges read in one scrape; the last one resets the histogram
  for (const [key, help, value] of read) {
    const name = `nodejs_eventloop_lag_${key}_seconds`;
    registry.removeSingleMetric(name);
    new client.Gauge({ name, help, registers: [registry], collect() {
      this.set(h.count > 0 ? value() : 0);
      if (++left === read.length) {
        left = 0;
        h.reset();
      }
    } });
  }
}

/**
 * prom-client's `process_open_fds` (same name and help) listed off the event loop: its own
 * lists `/proc/self/fd` with readdirSync, and a master at 1000 bots holds ~5,000 descriptors
 * (each worker's pipes, its kept /proc and cgroup files): 14 ms of the loop a scrape in a CPU
 * profile at 1000 real idle workers. fs.promises.readdir lists in libuv's thread pool while
 * the rest of the scrape is written.
 */
function openFdsOffLoop(registry: client.Registry): void {
  if (process.platform !== 'linux') return;
  registry.removeSingleMetric('process_open_fds');
  new client.Gauge({ name: 'process_open_fds', help: 'Number of open file descriptors.', registers: [registry],
    async collect() {
      // One fewer: the listing's own descriptor, closed by now (as prom-client counts).
      const fds = await fsp.readdir('/proc/self/fd').catch(() => null);
      if (fds) this.set(fds.length - 1);
    } });
}

/** The cluster's series (DESIGN.md, "The cluster"): members, ownership, takeovers by cause, renewals, self-fences. */
function clusterMetrics(registry: client.Registry, read: () => ClusterGauges): void {
  const gauge = (name: string, help: string, value: (g: ClusterGauges) => number) => new client.Gauge({ name, help, registers: [registry], collect() { this.set(value(read())); } });
  gauge('botfleet_cluster_members', 'live members of the cluster (leases not expired) at this master\'s last look', (g) => g.liveMembers);
  gauge('botfleet_cluster_bots_owned', 'bots this master owns (runs)', (g) => g.ownedHere);
  gauge('botfleet_cluster_bots_without_owner', 'enabled bots no live member owns at this master\'s last look (stopped everywhere until one takes them)', (g) => g.withoutOwner);
  gauge('botfleet_cluster_lease_live', '1 while this master holds a live lease (renewed within CLUSTER_RENEW_DEADLINE_MS)', (g) => (g.leaseLive ? 1 : 0));
  gauge('botfleet_cluster_renew_seconds', 'round trip of this master\'s last good lease renewal, seconds', (g) => (g.counters.lastRenewMs ?? 0) / 1000);
  const counter = (name: string, help: string, value: (g: ClusterGauges) => number) => new client.Counter({ name, help, registers: [registry], collect() { this.reset(); this.inc(value(read())); } });
  counter('botfleet_cluster_renew_failures_total', 'lease renewals of this master that failed (the database did not answer, or refused)', (g) => g.counters.renewFailures);
  counter('botfleet_cluster_self_fences_total', 'times this master stopped every bot it owned because its lease was not renewed within the deadline', (g) => g.counters.selfFences);
  new client.Counter({ name: 'botfleet_cluster_takeovers_total', help: `bots this master took, by cause (${TAKE_CAUSES.join(', ')}); every cause from 0`, labelNames: ['cause'], registers: [registry],
    collect() {
      const t = read().counters.takeovers;
      this.reset();
      for (const cause of TAKE_CAUSES) this.inc({ cause }, t[cause] ?? 0);
    } });
}

/** What the per-bot families read, each once per scrape. */
interface Rows {
  status(): WorkerStatus[];
  totals(): Array<[string, BotTotals]>;
  journal(): Array<[string, JournalStats]>;
}

/** The per-bot families, in the order they are written. */
function botFamilies(src: MetricSources, rows: Rows, bot: (id: string) => string): TextFamily[] {
  const { status, totals } = rows;
  const botId = (w: WorkerStatus) => w.botId;
  const perBot = (name: string, help: string, type: 'counter' | 'gauge', value: (w: WorkerStatus) => number) => perBotFamily(name, help, type, status, botId, value, bot);
  const perTotals = (name: string, help: string, value: (t: BotTotals) => number) => perBotFamily(name, help, 'counter', totals, firstOf, (r) => value(r[1]), bot);
  /** A family of one block of lines per bot, each kept while `vals` stay the same (KeptText). */
  const blocks = <T>(name: string, help: string, type: 'counter' | 'gauge', rows: () => readonly T[], id: (r: T) => string, vals: (r: T) => Array<string | number>, block: (r: T, l: string) => string[]): TextFamily => {
    const kept = new KeptText();
    const make = (r: T) => block(r, bot(id(r))).join('\n');
    return { name, help, type, lines(out) {
      kept.begin();
      const all = rows();
      for (let i = 0; i < all.length; i++) kept.text(id(all[i]!), vals(all[i]!), all[i]!, make);
      out.block(kept.end());
    } };
  };
  return [
    blocks('botfleet_worker_state', 'the state each bot is in: one series per bot, value 1, the state as its label', 'gauge', status, botId, (w) => [w.state],
      (w, l) => [`botfleet_worker_state{${l},state="${w.state}"} 1`]),
    blocks('botfleet_bot_info', 'always 1: each bot\'s name, resolved delivery mode and Telegram @username (empty until getMe answered)', 'gauge', status, botId, (w) => [w.name, w.mode ?? '', w.username ?? ''],
      (w, l) => [`botfleet_bot_info{${l},name="${escapeLabel(w.name.slice(0, 64))}",mode="${w.mode ?? ''}",username="${escapeLabel(w.username ?? '')}"} 1`]),
    perBot('botfleet_worker_restarts_total', 'restarts since the master started', 'counter', (w) => w.restarts),
    // Every reason at 0 from a bot's first appearance, so increase() counts its first exit (Prometheus: initialize known label sets).
    blocks('botfleet_worker_exits_total', `worker exits by lastExit reason (${EXIT_REASONS.join(', ')}) since the master started; every reason from 0`, 'counter', status, botId,
      (w) => EXIT_REASONS.map((reason) => w.exitsByReason[reason] ?? 0),
      (w, l) => EXIT_REASONS.map((reason) => `botfleet_worker_exits_total{${l},reason="${reason}"} ${w.exitsByReason[reason] ?? 0}`)),
    perTotals('botfleet_updates_received_total', 'updates that reached the bot\'s workers (polled or delivered; redeliveries included)', (t) => t.received),
    perTotals('botfleet_updates_handled_total', 'updates whose handler ran', (t) => t.handled),
    perTotals('botfleet_updates_failed_total', 'updates whose handler failed (threw or rejected)', (t) => t.failed),
    perTotals('botfleet_updates_deduplicated_total', 'updates a worker dropped as already handled (the dedup window)', (t) => t.deduplicated),
    histogramFamily('botfleet_handler_duration_seconds', 'handler run time per update, seconds', HANDLER_BUCKETS_S,
      () => totals().map(([id, t]) => ({ bot: id, buckets: t.handlerBuckets, sum: t.handlerSecondsSum })), bot),
    blocks('botfleet_telegram_api_errors_total', 'Bot API calls of the bot that failed, by method and HTTP status (network: no reply); 409 on getUpdates is another poller, 429 flood control', 'counter', totals, firstOf,
      ([, t]) => [...t.apiErrors.values()].flatMap((r) => [r.method, r.code, r.count]),
      ([, t], l) => [...t.apiErrors.values()].map((r) => `botfleet_telegram_api_errors_total{${l},method="${escapeLabel(r.method)}",code="${escapeLabel(r.code)}"} ${r.count}`)),
    perBot('botfleet_webhook_drifts_total', 'times the bot\'s webhook registration was found changed (getWebhookInfo) and set again, since the master started', 'counter', (w) => w.webhookDrifts),
    ...journalFamilies(rows.journal, bot),
    perBot('botfleet_worker_cpu_percent', 'CPU of the bot\'s processes, percent of one core, between their last two reads (with a cgroup: ~30 s apart, at its listings, so a process the bot started counts from the next; without: every sample)', 'gauge', (w) => w.cpuPercent ?? 0),
    perBot('botfleet_worker_heartbeat_age_seconds', 'seconds since the last heartbeat (0 without a live worker)', 'gauge', (w) => (w.lastHeartbeatAt && w.pid !== null ? Math.max(0, (Date.now() - Date.parse(w.lastHeartbeatAt)) / 1000) : 0)),
    perBot('botfleet_worker_rss_bytes', 'resident memory of the bot\'s processes, bytes', 'gauge', (w) => w.rssBytes),
    perBot('botfleet_worker_queue_depth', 'updates queued or in flight in the worker', 'gauge', (w) => w.queueDepth),
    perBot('botfleet_worker_uptime_seconds', 'seconds since the worker was forked', 'gauge', (w) => w.uptimeMs / 1000),
    perBotFamily('botfleet_dead_letters', 'updates in the dead-letter queue (botfleet dlq list)', 'gauge', () => deadLetterRows(status(), src.deadLetters?.()), firstOf, (r) => r[1], bot),
  ];
}

const firstOf = <K>(r: readonly [K, unknown]): K => r[0];

/** Dead letters by bot: every configured bot (0 when none), then the bots no longer configured that still have some. */
function deadLetterRows(status: WorkerStatus[], counts: Map<string, number> = new Map()): Array<[string, number]> {
  const rows: Array<[string, number]> = [];
  for (const w of status) if (!counts.has(w.botId)) rows.push([w.botId, 0]);
  for (const row of counts) rows.push(row);
  return rows;
}

/** The journal's per-bot series (webhook bots, and polling bots' acked ids). */
function journalFamilies(rows: () => Array<[string, JournalStats]>, bot: (id: string) => string): TextFamily[] {
  const f = (name: string, help: string, value: (j: JournalStats) => number, type: 'counter' | 'gauge' = 'counter') => perBotFamily(name, help, type, rows, firstOf, (r) => value(r[1]), bot);
  return [
    f('botfleet_journal_received_total', 'webhook updates that reached the journal since the master started', (j) => j.received),
    f('botfleet_journal_journaled_total', 'updates committed to the journal (answered 200)', (j) => j.journaled),
    f('botfleet_journal_duplicates_total', 'updates already pending or acked, answered 200 and not handled again', (j) => j.duplicates),
    f('botfleet_journal_refused_total', 'updates refused with 503 (JOURNAL_MAX_PENDING)', (j) => j.refused),
    f('botfleet_journal_delivered_total', 'journaled updates acked by a worker', (j) => j.delivered + j.failed),
    f('botfleet_journal_dead_lettered_total', 'journaled updates moved to the dead-letter queue', (j) => j.deadLettered),
    f('botfleet_journal_pending', 'updates in the journal not yet acked', (j) => j.pending, 'gauge'),
    f('botfleet_journal_oldest_pending_age_seconds', 'age of the oldest pending update (0 when none)', (j) => (j.oldestPendingAgeMs ?? 0) / 1000, 'gauge'),
  ];
}

/** Values computed once and kept until `drop()` (the end of a scrape). */
function snapshots(): { of<T>(fn: () => T): () => T; drop(): void } {
  const kept: Array<{ v?: unknown; has: boolean }> = [];
  return {
    of<T>(fn: () => T) {
      const slot: { v?: unknown; has: boolean } = { has: false };
      kept.push(slot);
      return () => {
        if (!slot.has) Object.assign(slot, { v: fn(), has: true });
        return slot.v as T;
      };
    },
    drop() {
      for (const s of kept) Object.assign(s, { v: undefined, has: false });
    },
  };
}

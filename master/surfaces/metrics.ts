/**
 * Prometheus metrics (prom-client), `botfleet_` prefix, label `bot` = the bot's id
 * (never its token). Per-bot series are filled from the supervisor at scrape time, so
 * every configured bot appears, stopped and quarantined ones included, and nothing is
 * tracked twice. Counters count since the master started and survive worker restarts
 * (lifecycle/counters.ts). The master's own process metrics keep prom-client's standard
 * `process_*`/`nodejs_*` names, so stock Node.js dashboards work.
 * The series of one bot: README "Metrics".
 */
import client from 'prom-client';
import type { WorkerStatus } from '../lifecycle/child.js';
import type { BotTotals } from '../lifecycle/counters.js';
import { VERSION } from '../../common/version.js';
import type { JournalStats } from '../delivery/journal.js';
import { HANDLER_BUCKETS_S } from '../../worker/protocol.js';

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
  journal?(): Record<string, JournalStats>;
  /** The last configuration reload: whether it succeeded, and wall-clock ms of the last success (null: none yet). */
  configReload?(): { success: boolean; lastSuccessMs: number | null };
}

/** The registry to serve, and the webhook server's observer (its port: `onResponse`). */
export interface Metrics {
  registry: client.Registry;
  /**
   * One scrape of `registry` that leaves the event loop free: each family of ours is
   * collected in an event-loop turn of its own (I/O is served between them), all from
   * one snapshot of the fleet taken for the scrape.
   */
  scrape(): Promise<string>;
  /** One webhook request answered with `code` after `seconds`; `bot` is null for a path that names no webhook bot. */
  observeWebhook(bot: string | null, code: number, seconds: number): void;
}

export function createMetrics(src: MetricSources): Metrics {
  const registry = new client.Registry();
  // Every series of one scrape reads the same snapshot, taken once and dropped when the scrape ends.
  const snap = snapshots();
  const status = snap.of(src.status);
  const totals = snap.of(src.totals);
  const journalRows = snap.of(() => Object.entries(src.journal?.() ?? {}));
  const turn = turnGate();
  client.collectDefaultMetrics({ register: registry });
  // prom-client exports these three gauges with a `_total` suffix, which `promtool check metrics` rejects.
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) registry.removeSingleMetric(name);
  /** One series per bot of `rows()` at scrape time; a counter when `counter`. */
  const series = <T>(rows: () => Iterable<[string, T]>) => (name: string, help: string, value: (row: T) => number, counter = false) => {
    const fill = (put: (labels: { bot: string }, v: number) => void) => {
      for (const [bot, row] of rows()) put({ bot }, value(row));
    };
    return counter
      ? new client.Counter({ name, help, labelNames: ['bot'], registers: [registry], async collect() { await turn(); this.reset(); fill((l, v) => this.inc(l, v)); } })
      : new client.Gauge({ name, help, labelNames: ['bot'], registers: [registry], async collect() { await turn(); this.reset(); fill((l, v) => this.set(l, v)); } });
  };
  const perBot = series(snap.of(() => status().map((w): [string, WorkerStatus] => [w.botId, w])));
  const perTotals = series(totals);
  const perJournal = series(journalRows);
  new client.Gauge({
    name: 'botfleet_worker_state', help: 'the state each bot is in: one series per bot, value 1, the state as its label', labelNames: ['bot', 'state'], registers: [registry],
    async collect() {
      await turn();
      this.reset();
      for (const w of status()) this.set({ bot: w.botId, state: w.state }, 1);
    },
  });
  new client.Gauge({
    name: 'botfleet_bot_info', help: 'always 1: each bot\'s name, resolved delivery mode and Telegram @username (empty until getMe answered)', labelNames: ['bot', 'name', 'mode', 'username'], registers: [registry],
    async collect() {
      await turn();
      this.reset();
      for (const w of status()) this.set({ bot: w.botId, name: w.name.slice(0, 64), mode: w.mode ?? '', username: w.username ?? '' }, 1);
    },
  });
  perBot('botfleet_worker_restarts_total', 'restarts since the master started', (w) => w.restarts, true);
  new client.Counter({
    name: 'botfleet_worker_exits_total', help: 'worker exits by lastExit reason (crash, exited, config, protocol, hung, memory, startup-timeout, operator, rolling-restart, config-change) since the master started', labelNames: ['bot', 'reason'], registers: [registry],
    async collect() {
      await turn();
      this.reset();
      for (const w of status()) for (const [reason, n] of Object.entries(w.exitsByReason)) this.inc({ bot: w.botId, reason }, n);
    },
  });
  perTotals('botfleet_updates_received_total', 'updates that reached the bot\'s workers (polled or delivered; redeliveries included)', (t) => t.received, true);
  perTotals('botfleet_updates_handled_total', 'updates whose handler ran', (t) => t.handled, true);
  perTotals('botfleet_updates_failed_total', 'updates whose handler failed (threw or rejected)', (t) => t.failed, true);
  perTotals('botfleet_updates_deduplicated_total', 'updates a worker dropped as already handled (the dedup window)', (t) => t.deduplicated, true);
  registry.registerMetric(histogramFamily('botfleet_handler_duration_seconds', 'handler run time per update, seconds', HANDLER_BUCKETS_S,
    () => totals().map(([bot, t]) => ({ labels: { bot }, buckets: t.handlerBuckets, sum: t.handlerSecondsSum })), turn));
  new client.Counter({
    name: 'botfleet_telegram_api_errors_total', help: 'Bot API calls of the bot that failed, by method and HTTP status (network: no reply); 409 on getUpdates is another poller, 429 flood control', labelNames: ['bot', 'method', 'code'], registers: [registry],
    async collect() {
      await turn();
      this.reset();
      for (const [bot, t] of totals()) for (const r of t.apiErrors.values()) this.inc({ bot, method: r.method, code: r.code }, r.count);
    },
  });
  perBot('botfleet_webhook_drifts_total', 'times the bot\'s webhook registration was found changed (getWebhookInfo) and set again, since the master started', (w) => w.webhookDrifts, true);
  journalSeries(perJournal);
  perBot('botfleet_worker_cpu_percent', 'CPU of the bot\'s processes, percent of one core, at the last sample', (w) => w.cpuPercent ?? 0);
  perBot('botfleet_worker_heartbeat_age_seconds', 'seconds since the last heartbeat (0 without a live worker)', (w) => (w.lastHeartbeatAt && w.pid !== null ? Math.max(0, (Date.now() - Date.parse(w.lastHeartbeatAt)) / 1000) : 0));
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
  new client.Gauge({ name: 'botfleet_build_info', help: 'always 1; the labels say what runs', labelNames: ['version', 'node'], registers: [registry] }).set({ version: VERSION, node: process.version }, 1);
  perBot('botfleet_worker_rss_bytes', 'resident memory of the bot\'s processes, bytes', (w) => w.rssBytes);
  perBot('botfleet_worker_queue_depth', 'updates queued or in flight in the worker', (w) => w.queueDepth);
  perBot('botfleet_worker_uptime_seconds', 'seconds since the worker was forked', (w) => w.uptimeMs / 1000);
  const deadLetters = src.deadLetters;
  new client.Gauge({
    name: 'botfleet_dead_letters', help: 'updates in the dead-letter queue (botfleet dlq list)', labelNames: ['bot'], registers: [registry],
    async collect() {
      await turn();
      this.reset();
      const counts = deadLetters?.() ?? new Map<string, number>();
      for (const w of status()) this.set({ bot: w.botId }, counts.get(w.botId) ?? 0);
      for (const [bot, n] of counts) this.set({ bot }, n); // also bots no longer configured
    },
  });
  const requests = new client.Counter({ name: 'botfleet_webhook_requests_total', help: 'webhook requests by bot and HTTP status answered (bot="" for a path naming no webhook bot)', labelNames: ['bot', 'code'], registers: [registry] });
  const duration = new client.Histogram({ name: 'botfleet_webhook_request_duration_seconds', help: 'time from a webhook request\'s arrival to its answer, seconds (all bots)', buckets: [...WEBHOOK_BUCKETS_S], registers: [registry] });
  let scraping: Promise<string> | null = null;
  return {
    registry,
    // Concurrent scrapes share one: a second Prometheus (or a retry) costs nothing more.
    scrape: () => (scraping ??= registry.metrics().finally(() => {
      scraping = null;
      snap.drop();
    })),
    observeWebhook(bot, code, seconds) {
      requests.inc({ bot: bot ?? '', code: String(code) });
      duration.observe(seconds);
    },
  };
}

/** The journal's per-bot series (webhook bots, and polling bots' acked ids). */
function journalSeries(perJournal: (name: string, help: string, value: (j: JournalStats) => number, counter?: boolean) => unknown): void {
  perJournal('botfleet_journal_received_total', 'webhook updates that reached the journal since the master started', (j) => j.received, true);
  perJournal('botfleet_journal_journaled_total', 'updates committed to the journal (answered 200)', (j) => j.journaled, true);
  perJournal('botfleet_journal_duplicates_total', 'updates already pending or acked, answered 200 and not handled again', (j) => j.duplicates, true);
  perJournal('botfleet_journal_refused_total', 'updates refused with 503 (JOURNAL_MAX_PENDING)', (j) => j.refused, true);
  perJournal('botfleet_journal_delivered_total', 'journaled updates acked by a worker', (j) => j.delivered + j.failed, true);
  perJournal('botfleet_journal_dead_lettered_total', 'journaled updates moved to the dead-letter queue', (j) => j.deadLettered, true);
  perJournal('botfleet_journal_pending', 'updates in the journal not yet acked', (j) => j.pending);
  perJournal('botfleet_journal_oldest_pending_age_seconds', 'age of the oldest pending update (0 when none)', (j) => (j.oldestPendingAgeMs ?? 0) / 1000);
}

/** One labelled histogram's counts: per bucket (not cumulative, +Inf last) and the sum. */
interface HistogramRow { labels: Record<string, string>; buckets: readonly number[]; sum: number }

/**
 * A histogram family whose counts are kept elsewhere (the workers measure, the master
 * adds them up): prom-client's Histogram can only observe, so this is a collector of
 * the same shape registered with `registerMetric` (`_bucket{le}` cumulative, `_sum`, `_count`).
 */
function histogramFamily(name: string, help: string, bounds: readonly number[], rows: () => HistogramRow[], turn: () => Promise<void>): client.Metric {
  const les = [...bounds.map(String), '+Inf'];
  const collector = {
    name, help, type: 'histogram', aggregator: 'sum',
    async get() {
      await turn();
      const values: Array<{ metricName: string; labels: Record<string, string | number>; value: number }> = [];
      for (const r of rows()) {
        let acc = 0;
        for (let i = 0; i < les.length; i++) {
          acc += r.buckets[i] ?? 0;
          values.push({ metricName: `${name}_bucket`, labels: { ...r.labels, le: les[i]! }, value: acc });
        }
        values.push({ metricName: `${name}_sum`, labels: r.labels, value: r.sum }, { metricName: `${name}_count`, labels: r.labels, value: acc });
      }
      return { name, help, type: 'histogram', aggregator: 'sum', values };
    },
    reset() {},
  };
  return collector as unknown as client.Metric;
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

/**
 * Each call resolves in an event-loop turn after the previous call's (setImmediate runs
 * in the check phase, after I/O is polled): the collects of one scrape, one per turn.
 * Measured at 1000 bots: the whole scrape in one turn stalled the loop 246 ms.
 */
function turnGate(): () => Promise<void> {
  let last: Promise<void> = Promise.resolve();
  return () => (last = last.then(() => new Promise<void>((r) => setImmediate(r))));
}

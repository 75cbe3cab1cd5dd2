/**
 * Prometheus metrics (prom-client), `botfleet_` prefix. Gauges are filled from the
 * supervisor's status at scrape time, so every configured bot appears, stopped
 * and quarantined ones included, and nothing is tracked twice.
 */
import client from 'prom-client';
import type { ChildState, WorkerStatus } from '../lifecycle/child.js';
import { VERSION } from '../../common/version.js';
import type { JournalStats } from '../delivery/journal.js';

const STATES: readonly ChildState[] = ['pending', 'starting', 'running', 'draining', 'backoff', 'quarantined', 'stopped'];

/**
 * A registry whose gauges read `status()` on each scrape; `deadLetters` gives each
 * bot's dead-letter count (`botfleet_dead_letters`, 0 for configured bots with none);
 * `memoryCapBytes` is exported as `botfleet_worker_memory_cap_bytes`.
 */
export function createMetrics(statusNow: () => WorkerStatus[], deadLetters: () => Map<string, number> = () => new Map(), memoryCapBytes?: number,
  journalNow: () => Record<string, JournalStats> = () => ({})): client.Registry {
  const registry = new client.Registry();
  // Every series of one scrape reads the same snapshot, taken once: the collects of a
  // scrape run in one event-loop turn, and the snapshot is dropped at the next.
  const status = perScrape(statusNow);
  const journalRows = perScrape(() => Object.entries(journalNow()));
  client.collectDefaultMetrics({ register: registry, prefix: 'botfleet_master_' });
  // prom-client exports these three gauges with a `_total` suffix, which `promtool check metrics` rejects.
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) registry.removeSingleMetric(`botfleet_master_${name}`);
  /** One series per bot of `rows()` at scrape time; a counter when `counter`. */
  const series = <T>(rows: () => Iterable<[string, T]>) => (name: string, help: string, value: (row: T) => number, counter = false) => {
    const fill = (put: (labels: { bot: string }, v: number) => void) => {
      for (const [bot, row] of rows()) put({ bot }, value(row));
    };
    return counter
      ? new client.Counter({ name, help, labelNames: ['bot'], registers: [registry], collect() { this.reset(); fill((l, v) => this.inc(l, v)); } })
      : new client.Gauge({ name, help, labelNames: ['bot'], registers: [registry], collect() { this.reset(); fill((l, v) => this.set(l, v)); } });
  };
  /** Series per configured bot, from status. */
  const perBot = series(perScrape(() => status().map((w): [string, WorkerStatus] => [w.botId, w])));
  /** Series per bot with journal state (webhook bots, and polling bots' acked ids). */
  const perJournal = series(journalRows);
  new client.Gauge({
    name: 'botfleet_worker_state', help: '1 for the state each bot is in, 0 for the others', labelNames: ['bot', 'state'], registers: [registry],
    collect() {
      this.reset();
      for (const w of status()) for (const s of STATES) this.set({ bot: w.botId, state: s }, w.state === s ? 1 : 0);
    },
  });
  // Counters are counters (a `_total` gauge fails `promtool check metrics`). restarts and exits
  // count since the master started; messages and errors since the worker did (rate() handles the reset).
  perBot('botfleet_worker_restarts_total', 'restarts since the master started', (w) => w.restarts, true);
  perBot('botfleet_worker_messages_total', 'updates handled by the current worker', (w) => w.messages, true);
  perBot('botfleet_worker_errors_total', 'handler errors in the current worker', (w) => w.errors, true);
  new client.Counter({
    name: 'botfleet_worker_exits_total', help: 'worker exits by lastExit reason (crash, exited, config, protocol, hung, memory, startup-timeout, operator, rolling-restart, config-change) since the master started', labelNames: ['bot', 'reason'], registers: [registry],
    collect() {
      this.reset();
      for (const w of status()) for (const [reason, n] of Object.entries(w.exitsByReason)) this.inc({ bot: w.botId, reason }, n);
    },
  });
  perBot('botfleet_webhook_drifts_total', 'times the bot\'s webhook registration was found changed (getWebhookInfo) and set again, since the master started', (w) => w.webhookDrifts, true);
  perJournal('botfleet_journal_received_total', 'webhook updates that reached the journal since the master started', (j) => j.received, true);
  perJournal('botfleet_journal_journaled_total', 'updates committed to the journal (answered 200)', (j) => j.journaled, true);
  perJournal('botfleet_journal_duplicates_total', 'updates already pending or acked, answered 200 and not handled again', (j) => j.duplicates, true);
  perJournal('botfleet_journal_refused_total', 'updates refused with 503 (JOURNAL_MAX_PENDING)', (j) => j.refused, true);
  perJournal('botfleet_journal_delivered_total', 'journaled updates acked by a worker', (j) => j.delivered + j.failed, true);
  perJournal('botfleet_journal_dead_lettered_total', 'journaled updates moved to the dead-letter queue', (j) => j.deadLettered, true);
  perJournal('botfleet_journal_pending', 'updates in the journal not yet acked', (j) => j.pending);
  perJournal('botfleet_journal_oldest_pending_age_seconds', 'age of the oldest pending update (0 when none)', (j) => (j.oldestPendingAgeMs ?? 0) / 1000);
  perBot('botfleet_worker_cpu_percent', 'CPU of the bot\'s processes, percent of one core, at the last sample', (w) => w.cpuPercent ?? 0);
  perBot('botfleet_worker_heartbeat_age_seconds', 'seconds since the last heartbeat (0 without a live worker)', (w) => (w.lastHeartbeatAt && w.pid !== null ? Math.max(0, (Date.now() - Date.parse(w.lastHeartbeatAt)) / 1000) : 0));
  if (memoryCapBytes !== undefined) {
    new client.Gauge({ name: 'botfleet_worker_memory_cap_bytes', help: 'the RSS cap of each bot (MAX_MEMORY_PER_WORKER_MB)', registers: [registry] }).set(memoryCapBytes);
  }
  new client.Gauge({ name: 'botfleet_build_info', help: 'always 1; the labels say what runs', labelNames: ['version', 'node'], registers: [registry] }).set({ version: VERSION, node: process.version }, 1);
  perBot('botfleet_worker_rss_bytes', 'resident memory of the worker, bytes', (w) => w.rssBytes);
  perBot('botfleet_worker_queue_depth', 'updates queued or in flight in the worker', (w) => w.queueDepth);
  perBot('botfleet_worker_uptime_seconds', 'seconds since the worker was forked', (w) => w.uptimeMs / 1000);
  new client.Gauge({
    name: 'botfleet_dead_letters', help: 'updates in the dead-letter queue (botfleet dlq list)', labelNames: ['bot'], registers: [registry],
    collect() {
      this.reset();
      const counts = deadLetters();
      for (const w of status()) this.set({ bot: w.botId }, counts.get(w.botId) ?? 0);
      for (const [bot, n] of counts) this.set({ bot }, n); // also bots no longer configured
    },
  });
  return registry;
}

/** `fn`'s value, computed at most once per event-loop turn. */
function perScrape<T>(fn: () => T): () => T {
  let cached: { v: T } | null = null;
  return () => {
    if (cached) return cached.v;
    cached = { v: fn() };
    setImmediate(() => (cached = null));
    return cached.v;
  };
}

/**
 * Prometheus metrics (prom-client), `botfleet_` prefix. Gauges are filled from the
 * supervisor's status at scrape time, so every configured bot appears, stopped
 * and quarantined ones included, and nothing is tracked twice.
 */
import client from 'prom-client';
import type { ChildState, WorkerStatus } from '../lifecycle/child.js';

const STATES: readonly ChildState[] = ['pending', 'starting', 'running', 'draining', 'backoff', 'quarantined', 'stopped'];

/**
 * A registry whose gauges read `status()` on each scrape; `deadLetters` gives each
 * bot's dead-letter count (`botfleet_dead_letters`, 0 for configured bots with none).
 */
export function createMetrics(status: () => WorkerStatus[], deadLetters: () => Map<string, number> = () => new Map()): client.Registry {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry, prefix: 'botfleet_master_' });
  const perBot = (name: string, help: string, value: (w: WorkerStatus) => number) =>
    new client.Gauge({
      name, help, labelNames: ['bot'], registers: [registry],
      collect() {
        this.reset();
        for (const w of status()) this.set({ bot: w.botId }, value(w));
      },
    });
  new client.Gauge({
    name: 'botfleet_worker_state', help: '1 for the state each bot is in, 0 for the others', labelNames: ['bot', 'state'], registers: [registry],
    collect() {
      this.reset();
      for (const w of status()) for (const s of STATES) this.set({ bot: w.botId, state: s }, w.state === s ? 1 : 0);
    },
  });
  perBot('botfleet_worker_restarts_total', 'restarts since the master started', (w) => w.restarts);
  perBot('botfleet_worker_messages_total', 'updates handled by the current worker', (w) => w.messages);
  perBot('botfleet_worker_errors_total', 'handler errors in the current worker', (w) => w.errors);
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

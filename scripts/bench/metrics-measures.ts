/**
 * Measure 9: a /metrics scrape at 1000 registered bots (target < 100 ms). The master's
 * real registry (createMetrics) over real child records (newChild, heartbeats added with
 * addBeat, exits, API errors; half of them webhook bots with journal rows), in this
 * process, against a baseline of prom-client alone: one Gauge holding the same number of
 * series, set directly. Also the longest event-loop stall during a scrape (the longest gap
 * between turns of a setImmediate chain ticking through it).
 */
import client from 'prom-client';
import { childStatus, newChild, type Child } from '../../master/lifecycle/child.js';
import { addBeat } from '../../master/lifecycle/counters.js';
import type { JournalStats } from '../../master/delivery/journal.js';
import { createMetrics } from '../../master/surfaces/metrics.js';
import { HANDLER_BUCKETS_S } from '../../worker/protocol.js';
import { fmt, summarize, type Row } from './stats.js';

function fleetOf(n: number): Child[] {
  return Array.from({ length: n }, (_, i) => {
    const c = newChild(`b${String(i).padStart(4, '0')}`, `Bot ${i}`, null);
    c.state = i % 50 === 0 ? 'quarantined' : 'running';
    c.life = { ...c.life, mode: i % 2 === 0 ? 'webhook' : 'polling' };
    c.exitsByReason = { crash: i % 3, 'rolling-restart': 1 };
    addBeat(c.totals, null, {
      messages: 1000 + i, errors: i % 7,
      telemetry: { received: 1000 + i, deduplicated: i % 5, handlerBuckets: new Array<number>(HANDLER_BUCKETS_S.length + 1).fill(10), handlerSecondsSum: 12.5, apiErrors: [['sendMessage', '429', 3], ['getUpdates', '409', 1]] },
    });
    return c;
  });
}

const time = async (fn: () => Promise<unknown>, rounds: number) => {
  const out: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const t = performance.now();
    await fn();
    out.push(performance.now() - t);
  }
  return out;
};

export async function metricsMeasures(bots: number, rounds: number): Promise<{ rows: Row[]; raw: unknown }> {
  const children = fleetOf(bots);
  const journal: Record<string, JournalStats> = {};
  for (const c of children) if (c.life.mode === 'webhook') journal[c.botId] = { received: 10, journaled: 10, duplicates: 1, refused: 0, delivered: 9, failed: 0, deadLettered: 0, expired: 0, pending: 1, inFlight: 1, oldestPendingAgeMs: 20 } as unknown as JournalStats;
  const m = createMetrics({
    status: () => children.map((c) => childStatus(c, performance.now(), 3_600_000)), totals: () => children.map((c): [string, Child['totals']] => [c.botId, c.totals]),
    deadLetters: () => new Map([['b0001', 3]]), memoryCapBytes: 150 * 1048576, journal: () => Object.entries(journal),
  });
  for (const c of children) if (c.life.mode === 'webhook') m.observeWebhook(c.botId, 200, 0.004);
  const text = (await m.scrape()).toString('utf8');
  const series = text.split('\n').filter((l) => l && !l.startsWith('#')).length;
  // Baseline: prom-client alone, the same number of series in one Gauge, set directly.
  const base = new client.Registry();
  const g = new client.Gauge({ name: 'baseline_series', help: 'x', labelNames: ['bot', 'n'], registers: [base] });
  const perBot = Math.ceil(series / bots);
  for (const c of children) for (let k = 0; k < perBot; k++) g.set({ bot: c.botId, n: String(k) }, k);
  await time(() => m.scrape(), 3); // warm up both
  await time(() => base.metrics(), 3);
  const ours = await time(() => m.scrape(), rounds);
  const baseline = await time(() => base.metrics(), rounds);
  // The stall: the longest gap between event-loop turns while a scrape runs (a setImmediate chain ticking through it).
  const stalls: number[] = [];
  for (let i = 0; i < rounds; i++) {
    let running = true;
    let last = performance.now();
    let maxGap = 0;
    const tick = () => {
      const now = performance.now();
      maxGap = Math.max(maxGap, now - last);
      last = now;
      if (running) setImmediate(tick);
    };
    setImmediate(tick);
    await m.scrape();
    running = false;
    await new Promise((r) => setImmediate(r));
    stalls.push(maxGap);
  }
  const o = summarize(ours);
  const b = summarize(baseline);
  const stallMs = Math.max(...stalls);
  return {
    rows: [{
      measure: `9. /metrics scrape at ${bots} bots (${series} series)`, botfleet: `${fmt(o.median)} ms (${fmt(o.min)}–${fmt(o.max)}); loop stall max ${fmt(stallMs)} ms`,
      baseline: `${fmt(b.median)} ms prom-client alone, ${perBot * bots} series set directly`, ratio: o.median / b.median, target: '< 100 ms', ok: o.median < 100,
    }],
    raw: { bots, series, ours, baseline, stallMs },
  };
}

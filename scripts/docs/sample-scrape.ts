/**
 * One `/metrics` scrape of a master with one bot that did a bit of everything
 * (crashed, rolled, handled updates, met a 429, journaled a webhook update, left a
 * dead letter): every family the master can export has a sample in it. Read by the
 * monitoring test (the alerts query only what is exported) and by `npm run docs`
 * (docs/metrics.md is written from it, so the table cannot drift from the code).
 */
import { createMetrics } from '../../master/surfaces/metrics.js';
import { childStatus, newChild } from '../../master/lifecycle/child.js';
import { addBeat } from '../../master/lifecycle/counters.js';
import { HANDLER_BUCKETS_S } from '../../worker/protocol.js';
import type { JournalStats } from '../../master/delivery/journal-index.js';

/** The text of the scrape (Prometheus text format 0.0.4). */
export async function sampleScrape(): Promise<string> {
  const c = newChild('b1', 'Bot one', null);
  c.exitsByReason = { crash: 1, 'rolling-restart': 1 };
  addBeat(c.totals, null, {
    messages: 3, errors: 1,
    telemetry: { received: 4, deduplicated: 1, handlerBuckets: new Array<number>(HANDLER_BUCKETS_S.length + 1).fill(1), handlerSecondsSum: 0.5, apiErrors: [['sendMessage', '429', 2]] },
  });
  const journal: JournalStats = { received: 1, journaled: 1, duplicates: 0, refused: 0, delivered: 1, failed: 0, deadLettered: 0, expired: 0, pending: 0, inFlight: 0, oldestPendingAgeMs: null };
  const m = createMetrics({
    status: () => [childStatus(c, 0, 3_600_000)], totals: () => [['b1', c.totals]], deadLetters: () => new Map([['b1', 1]]), memoryCapBytes: 150 * 1048576,
    configReload: () => ({ success: true, lastSuccessMs: Date.now() }),
    journal: () => [['b1', journal]],
    cluster: () => ({ liveMembers: 3, ownedHere: 1, withoutOwner: 0, leaseLive: true, counters: { takeovers: { 'owner-dead': 1 }, renewFailures: 0, selfFences: 0, lastRenewMs: 2 } }),
  });
  m.observeWebhook('b1', 200, 0.004);
  return (await m.scrape()).toString('utf8');
}

/** One metric family of a scrape: name, type, help and the label names its samples carry (`le` left out). */
export interface FamilyDoc { name: string; type: string; help: string; labels: string[] }

/** The families of a scrape in the order they appear, read from its HELP/TYPE lines and samples. */
export function familiesOf(text: string): FamilyDoc[] {
  const byName = new Map<string, FamilyDoc>();
  const unescape = (h: string) => h.replace(/\\n/g, '\n').replace(/\\\\/g, '\\');
  for (const line of text.split('\n')) {
    const help = /^# HELP (\S+) (.*)$/.exec(line);
    if (help) byName.set(help[1]!, { name: help[1]!, type: '', help: unescape(help[2]!), labels: [] });
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type && byName.has(type[1]!)) byName.get(type[1]!)!.type = type[2]!;
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*?)(?:_bucket|_sum|_count)?\{([^}]*)\}/.exec(line);
    const fam = sample ? (byName.get(sample[1]!) ?? byName.get(/^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)![0])) : undefined;
    if (sample && fam) {
      for (const m of sample[2]!.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="/g)) if (m[1] !== 'le' && !fam.labels.includes(m[1]!)) fam.labels.push(m[1]!);
    }
  }
  return [...byName.values()];
}

/**
 * The shipped monitoring (monitoring/): the alert rules pass `promtool check rules` and
 * their unit tests (`promtool test rules`), and every series the rules and the Grafana
 * dashboard query is one the master exports, read from a real registry (createMetrics
 * over real child records) rather than a list kept by hand.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { newChild } from '../master/lifecycle/child.js';
import { addBeat } from '../master/lifecycle/counters.js';
import { sampleScrape } from '../scripts/docs/sample-scrape.js';
import { HANDLER_BUCKETS_S } from '../worker/protocol.js';
import { promtool } from './helpers/tools.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const MON = path.join(ROOT, 'monitoring');
const noPromtool = promtool() ? false : 'promtool not installed (.ci/run installs Debian\'s prometheus package)';

test('the alert rules pass promtool check rules', { skip: noPromtool }, () => {
  const r = spawnSync(promtool()!, ['check', 'rules', path.join(MON, 'alerts.yml')], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
  assert.match(r.stdout, /SUCCESS: \d+ rules found/);
});

test('the alert rules pass their promtool unit tests', { skip: noPromtool }, () => {
  const r = spawnSync(promtool()!, ['test', 'rules', 'alerts.test.yml'], { cwd: MON, encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
});

/** Every sample name of a scrape of a master with one bot that did a bit of everything. */
async function exportedNames(): Promise<Set<string>> {
  const text = await sampleScrape();
  return new Set(text.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(l)![0]));
}

/** Metric names a PromQL text uses (ours and the standard process/Node ones), not functions or labels. */
const referenced = (promql: string) => [...promql.matchAll(/\b((?:botfleet|process|nodejs)_[a-zA-Z0-9_]+)\b/g)].map((x) => x[1]!);

test('the alerts and the dashboard query only series the master exports', async () => {
  const names = await exportedNames();
  assert.ok(names.has('botfleet_handler_duration_seconds_bucket') && names.has('process_resident_memory_bytes'), 'the scrape itself');
  const alerts = fs.readFileSync(path.join(MON, 'alerts.yml'), 'utf8');
  const exprs = [...alerts.matchAll(/expr: (>\n(?: {10}.*\n)+|.*)/g)].map((x) => x[1]!);
  assert.ok(exprs.length >= 10, 'the rules were read');
  const dashboard = JSON.parse(fs.readFileSync(path.join(MON, 'grafana-dashboard.json'), 'utf8')) as {
    panels: Array<{ id: number; type: string; targets?: Array<{ expr: string }>; gridPos: object }>;
    templating: { list: Array<{ name: string; definition?: string }> };
  };
  const queries = [...dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr)), ...dashboard.templating.list.flatMap((v) => (v.definition ? [v.definition] : []))];
  const missing = [...exprs, ...queries].flatMap(referenced).filter((n) => !names.has(n));
  assert.deepEqual([...new Set(missing)], []);
  assert.deepEqual(dashboard.templating.list.map((v) => v.name), ['datasource', 'instance', 'bot'], 'a per-bot drill-down by variable');
  assert.equal(new Set(dashboard.panels.map((p) => p.id)).size, dashboard.panels.length, 'panel ids are unique');
  assert.ok(dashboard.panels.some((p) => p.targets?.some((t) => t.expr.includes('bot=~"$bot"'))));
});

test('bot totals: a worker restart adds the new worker\'s counts, and API error rows stay bounded', () => {
  const c = newChild('b', 'b', null);
  const beat = (messages: number, apiErrors: Array<[string, string, number]>) => ({
    messages, errors: 0, telemetry: { received: messages, deduplicated: 0, handlerBuckets: new Array<number>(HANDLER_BUCKETS_S.length + 1).fill(0), handlerSecondsSum: 0, apiErrors },
  });
  const first = beat(10, []);
  addBeat(c.totals, null, first);
  const second = beat(15, []);
  addBeat(c.totals, first, second);
  addBeat(c.totals, second, beat(3, [])); // a new worker: counts went down, all 3 are new
  assert.equal(c.totals.handled, 18);
  const methods = Array.from({ length: 100 }, (_, i) => [`method${String.fromCharCode(65 + (i % 26))}${String.fromCharCode(65 + Math.floor(i / 26))}`, '429', 1] as [string, string, number]);
  addBeat(c.totals, null, beat(0, methods));
  assert.ok(c.totals.apiErrors.size <= 64 + 16, `rows ${c.totals.apiErrors.size}`);
  const total = [...c.totals.apiErrors.values()].reduce((n, r) => n + r.count, 0);
  assert.equal(total, 100, 'past the bound, errors are counted under method "other"');
  assert.equal(c.totals.apiErrors.get('other 429')?.count, 100 - 64);
});

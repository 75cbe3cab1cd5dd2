#!/usr/bin/env node
/**
 * `npm run bench` (full) and `npm run bench -- --quick` (under 2 minutes).
 * Every figure is a ratio against a baseline measured in the same run (these
 * machines are shared and noisy); absolute times are printed beside it. Prints a
 * table and writes bench/results.json (a full run) or bench/results-<groups>.json
 * (`--only a,b`, so a partial run never replaces the full one's figures). Groups:
 * start, fleet, webhook, faults, metrics, page, pm2, cluster, scale (`--scale-n N`, 1000
 * bots by default, 100 with --quick; `--scale-idle-s S`, the idle window, 60 s).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fleetMeasures, workerStart } from './fleet-measures.js';
import { faultMeasures } from './fault-measures.js';
import { pm2Measures } from './pm2-measures.js';
import { cleanupAll } from './harness.js';
import { restartWaitMeasures, webhookMeasures } from './webhook-measures.js';
import { renderTable, type Row } from './stats.js';
import { metricsMeasures } from './metrics-measures.js';
import { statusPageMeasures } from './status-page-measures.js';
import { clusterMeasures } from './cluster-measures.js';
import { scaleMeasures } from './scale-measures.js';
import { postgresBinDir, POSTGRES_MISSING } from '../postgres.js';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const onlyArg = args[args.indexOf('--only') + 1];
const only = args.includes('--only') && onlyArg ? new Set(onlyArg.split(',')) : null;
const want = (g: string) => !only || only.has(g);
const numArg = (flag: string, dflt: number) => (args.includes(flag) ? Number(args[args.indexOf(flag) + 1]) : dflt);

const rows: Row[] = [];
const raw: Record<string, unknown> = {};
const started = Date.now();
const say = (s: string) => process.stderr.write(`[bench ${((Date.now() - started) / 1000).toFixed(0)}s] ${s}\n`);

async function group(name: string, fn: () => Promise<void>): Promise<void> {
  if (!want(name)) return;
  say(`${name}...`);
  try {
    await fn();
  } catch (err) {
    say(`${name} failed: ${(err as Error).stack ?? err}`);
    rows.push({ measure: `${name}: FAILED (${(err as Error).message.split('\n')[0]})`, botfleet: '-', baseline: '-', ratio: null, target: '-', ok: false });
  } finally {
    await cleanupAll();
  }
}

await group('start', async () => {
  const r = await workerStart(quick ? 5 : 20);
  rows.push(...r.rows);
  raw.workerStart = r.raw;
});
await group('fleet', async () => {
  const r = quick ? await fleetMeasures([10, 40], 40, 10) : await fleetMeasures([10, 100, 300], 100, 20);
  rows.push(...r.rows);
  raw.fleet = r.raw;
});
await group('webhook', async () => {
  const r = quick ? await webhookMeasures(2, 4, false) : await webhookMeasures(3, 15, true);
  rows.push(...r.rows);
  raw.webhook = r.raw;
  const w = await restartWaitMeasures(quick ? 3 : 8);
  rows.push(...w.rows);
  raw.restartWait = w.raw;
});
await group('faults', async () => {
  const r = await faultMeasures(quick ? 2 : 4);
  rows.push(...r.rows);
  raw.faults = r.raw;
});
await group('metrics', async () => {
  const r = await metricsMeasures(1000, quick ? 10 : 30);
  rows.push(...r.rows);
  raw.metrics = r.raw;
});
await group('page', async () => {
  const r = await statusPageMeasures(100, 100, quick ? 5000 : 20_000);
  rows.push(...r.rows);
  raw.statusPage = r.raw;
});
await group('pm2', async () => {
  const r = await pm2Measures(quick ? 3 : 7);
  rows.push(...r.rows);
  raw.pm2 = r.raw;
});
// Where the machine has PostgreSQL's server binaries (the row says so when not).
await group('cluster', async () => {
  if (!postgresBinDir()) return void rows.push({ measure: `cluster: skipped (${POSTGRES_MISSING})`, botfleet: '-', baseline: '-', ratio: null, target: '-', ok: true });
  const r = await clusterMeasures(quick);
  rows.push(...r.rows);
  raw.cluster = r.raw;
});
await group('scale', async () => {
  const r = await scaleMeasures(numArg('--scale-n', quick ? 100 : 1000), numArg('--scale-idle-s', quick ? 10 : 60) * 1000);
  rows.push(...r.rows);
  raw.scale = r.raw;
});

const table = renderTable(rows);
console.log(table);
const out = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../../bench', only ? `results-${[...only].sort().join('-')}.json` : 'results.json');
fs.mkdirSync(path.dirname(out), { recursive: true });
fs.writeFileSync(out, JSON.stringify({
  date: new Date().toISOString(), quick, node: process.version, cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model,
  memGiB: Math.round(os.totalmem() / 2 ** 30), seconds: Math.round((Date.now() - started) / 1000), rows, raw,
}, null, 2) + '\n');
say(`wrote ${path.relative(process.cwd(), out)}`);
process.exit(rows.some((r) => r.ok === false && r.measure.includes('FAILED')) ? 1 : 0);

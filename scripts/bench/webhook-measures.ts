/**
 * Measures 4 and 8: the webhook path under load (autocannon, 20 webhook bots)
 * against two same-run baselines, with the journal at JOURNAL_SYNC=full (the
 * default) and =normal, then with the `echo` handler replying through the
 * emulator; the master's event-loop delay under that load and the time from the
 * 200 to the worker's ack; how long updates wait in the journal while a worker
 * restarts; and the sustained rate against the seed's 450,000 jobs a day.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { webhookSecretToken } from '../../config/secrets.js';
import { homePaths } from '../../config/load.js';
import { copyHomeToPg } from '../../master/store/copy.js';
import { postgresBinDir, startLocalPostgres } from '../postgres.js';
import { freePort } from '../../common/free-port.js';
import { spawnBaseline } from './baseline-server.js';
import { BENCH_STATUS_HEADERS, benchEnv, makeHome, NOOP_HANDLER, onCleanup, startCliMaster, startEmulator, track } from './harness.js';
import { fmt, summarize, type Row } from './stats.js';

const LOAD = fileURLToPath(new URL('./load.js', import.meta.url));
const SEED_JOBS_PER_DAY = 450_000;
/** Length of the discarded warm-up load on each side, seconds. */
const WARMUP_SECONDS = 2;

interface Load { rps: number; p50: number; p99: number; non2xx: number; total: number }

/** Each load run gets its own update_id range: a repeated id would be dropped by a worker's dedup window, not handled. */
let nextUpdateId = 1;
const IDS_PER_RUN = 10_000_000;

/**
 * Concurrent webhook connections of the load: 10 per bot for 20 bots. Telegram opens up
 * to `max_connections` (40, botfleet's setting) per bot, so this is within what it
 * sends. At 40 in all (2 per bot) the closed-loop rate is bound by each request's
 * latency, not by capacity: that regime is measured as its own row.
 */
const CONNECTIONS = 200;
const LATENCY_BOUND_CONNECTIONS = 40;

/** One closed-loop load of `seconds` on `url` (autocannon in a process of its own), each run with fresh update ids. */
export async function runLoad(url: string, bots: Array<{ id: string; secret: string }>, seconds: number, connections = CONNECTIONS): Promise<Load> {
  const firstUpdateId = nextUpdateId;
  nextUpdateId += IDS_PER_RUN;
  const p = track(spawn(process.execPath, [LOAD, JSON.stringify({ url, bots, seconds, connections, firstUpdateId })], { stdio: ['ignore', 'pipe', 'inherit'] }));
  let out = '';
  p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  await once(p, 'exit');
  return JSON.parse(out.trim().split('\n').pop()!) as Load;
}

/**
 * botfleet's webhook path: 20 webhook bots with `handler`, under a master run by the
 * real CLI in its own process (as deployed). Each baseline has a process of its own
 * too: sides sharing a heap made whichever ran second pay the other's GC. With
 * `postgres`, the store (journal included) is a PostgreSQL server of its own on this
 * machine, fsync on (the durability of JOURNAL_SYNC=full), the home copied into it.
 */
interface BotfleetPath {
  url: string;
  bots: Array<{ id: string; secret: string }>;
  /** GET from the master's status server. */
  statusGet(p: string): Promise<string>;
  status(): Promise<import('../../master/surfaces/status-server.js').FleetStatus>;
  stop(): Promise<void>;
}

async function startBotfleetPath(handler: string, extraEnv: Record<string, string> = {}, nBots = 20, postgres = false): Promise<BotfleetPath> {
  const emu = await startEmulator(nBots);
  const home = makeHome(emu, { mode: 'webhook', handler });
  const port = await freePort();
  const pg = postgres ? await startLocalPostgres({ fsync: true }) : null;
  if (pg) onCleanup(() => pg.stop()); // stop() is idempotent: a failed measure leaves no server behind
  if (pg) await copyHomeToPg(homePaths(home), undefined, pg.url);
  const env = benchEnv(home, emu.apiRoot, { WEBHOOK_HOST: `http://127.0.0.1:${port}`, WEBHOOK_PORT: String(port), WEBHOOK_LISTEN_HOST: '127.0.0.1', ...(pg ? { DATABASE_URL: pg.url } : {}), ...extraEnv });
  const ids = emu.bots.map((_, i) => `b${String(i).padStart(3, '0')}`);
  const { master } = await startCliMaster(env, ids.length);
  const { status: statusPort } = JSON.parse(fs.readFileSync(path.join(home, 'run', 'ports.json'), 'utf8')) as { status: number };
  return {
    url: `http://127.0.0.1:${port}`,
    bots: ids.map((id) => ({ id, secret: webhookSecretToken('bench-secret', id) })),
    statusGet: async (p) => (await fetch(`http://127.0.0.1:${statusPort}${p}`, { headers: BENCH_STATUS_HEADERS })).text(),
    status: () => master.status(),
    stop: async () => {
      await master.stop();
      await emu.stop();
      await pg?.stop();
    },
  };
}

const median = (xs: number[]) => summarize(xs).median;
const medianLoad = (ls: Load[]): Load => ({ rps: median(ls.map((l) => l.rps)), p50: median(ls.map((l) => l.p50)), p99: median(ls.map((l) => l.p99)), non2xx: ls.reduce((n, l) => n + l.non2xx, 0), total: ls.reduce((n, l) => n + l.total, 0) });

/**
 * Measures 4 and 8. The machine's speed drifts by 2-3x within minutes, so the
 * servers stay up together and load rounds pair baseline and botfleet, in
 * rotating order; the ratio is the median of the per-round ratios. `withOther`
 * adds the same fleet under SCHED_OTHER as a third side (full runs; `--quick`
 * leaves it out to stay under 2 minutes).
 */
export async function webhookMeasures(seconds: number, rounds: number, withOther: boolean): Promise<{ rows: Row[]; raw: object }> {
  const alone = await spawnBaseline('alone', 0);
  const ipc = await spawnBaseline('ipc', 20);
  const ours = await startBotfleetPath(NOOP_HANDLER);
  const normal = await startBotfleetPath(NOOP_HANDLER, { JOURNAL_SYNC: 'normal' });
  // The same fleet with workers under SCHED_OTHER: what the default WORKER_SCHED_POLICY=batch is worth.
  const other = withOther ? await startBotfleetPath(NOOP_HANDLER, { WORKER_SCHED_POLICY: 'other' }) : null;
  // The journal on PostgreSQL, where the machine has its binaries (the row says so when not).
  const onPg = postgresBinDir() ? await startBotfleetPath(NOOP_HANDLER, {}, 20, true) : null;
  const ipcBots = ipc.botIds.map((id) => ({ id, secret: '' }));
  type SideKey = 'baseline' | 'ours' | 'normal' | 'other' | 'postgres';
  const sides: Array<{ key: SideKey; url: string; bots: Array<{ id: string; secret: string }>; path?: BotfleetPath }> = [
    { key: 'baseline', url: ipc.url, bots: ipcBots }, { key: 'ours', url: ours.url, bots: ours.bots, path: ours },
    { key: 'normal', url: normal.url, bots: normal.bots, path: normal },
    ...(other ? [{ key: 'other' as const, url: other.url, bots: other.bots }] : []),
    ...(onPg ? [{ key: 'postgres' as const, url: onPg.url, bots: onPg.bots }] : []),
  ];
  /** The master's event-loop delay p99 over one load (prom-client resets its histogram at each scrape), ms. */
  const loopP99: Record<'ours' | 'normal', number[]> = { ours: [], normal: [] };
  const lagP99 = async (p: BotfleetPath) => 1000 * Number(/^nodejs_eventloop_lag_p99_seconds (\S+)$/m.exec(await p.statusGet('/metrics'))?.[1] ?? NaN);
  // One discarded warm-up load per side first, so no measured round pays a cold JIT (autocannon's --warmup practice).
  for (const { url, bots } of [{ url: alone.url, bots: ipcBots }, ...sides]) await runLoad(url, bots, WARMUP_SECONDS);
  const runs: Array<Record<'alone' | 'baseline' | 'ours' | 'normal', Load> & { other?: Load; postgres?: Load }> = [];
  // The order rotates each round, so each side runs in each position equally often:
  // measured here, a side's position within a round biases it.
  for (let i = 0; i < rounds; i++) {
    const run = { alone: await runLoad(alone.url, ipcBots, seconds) } as (typeof runs)[number];
    for (let j = 0; j < sides.length; j++) {
      const side = sides[(i + j) % sides.length]!;
      if (side.path) await lagP99(side.path);
      run[side.key] = await runLoad(side.url, side.bots, seconds);
      if (side.path) loopP99[side.key as 'ours' | 'normal'].push(await lagP99(side.path));
    }
    runs.push(run);
  }
  // Few connections: each request's latency bounds the rate; the commit's wait shows here.
  const lowRuns: Array<{ baseline: Load; ours: Load }> = [];
  for (let i = 0; i < Math.max(2, Math.floor(rounds / 3)); i++) {
    const first = i % 2 === 0 ? 'baseline' : 'ours';
    const r = {} as { baseline: Load; ours: Load };
    for (const key of first === 'baseline' ? ['baseline', 'ours'] as const : ['ours', 'baseline'] as const) {
      const side = key === 'baseline' ? { url: ipc.url, bots: ipcBots } : ours;
      r[key] = await runLoad(side.url, side.bots, seconds, LATENCY_BOUND_CONNECTIONS);
    }
    lowRuns.push(r);
  }
  type Latency = { samples: number; p50Ms: number | null; p99Ms: number | null; maxMs: number | null };
  const latencyOf = async (p: BotfleetPath) => (JSON.parse(await p.statusGet('/webhook/stats')) as { deliveryLatency: Latency }).deliveryLatency;
  const [oursLatency, normalLatency] = [await latencyOf(ours), await latencyOf(normal)];
  const pgLatency = onPg ? await latencyOf(onPg) : null;
  await onPg?.stop();
  await other?.stop();
  await normal.stop();
  await ours.stop();
  const echoPath = await startBotfleetPath('echo');
  await runLoad(echoPath.url, echoPath.bots, WARMUP_SECONDS);
  const echoRuns: Array<{ baseline: Load; echo: Load }> = [];
  for (let i = 0; i < Math.max(1, Math.floor(rounds / 2)); i++) {
    if (i % 2 === 0) echoRuns.push({ baseline: await runLoad(ipc.url, ipcBots, seconds), echo: await runLoad(echoPath.url, echoPath.bots, seconds) });
    else {
      const echo = await runLoad(echoPath.url, echoPath.bots, seconds);
      echoRuns.push({ echo, baseline: await runLoad(ipc.url, ipcBots, seconds) });
    }
  }
  await echoPath.stop();
  await ipc.stop();
  await alone.stop();

  const ratio = median(runs.map((r) => r.ours.rps / r.baseline.rps));
  const normalRatio = median(runs.map((r) => r.normal.rps / r.baseline.rps));
  const n = medianLoad(runs.map((r) => r.normal));
  const lat = (l: Latency) => `p50 ${fmt(l.p50Ms ?? NaN, 1)} ms, p99 ${fmt(l.p99Ms ?? NaN, 1)} ms (last ${l.samples} acks)`;
  const otherRuns = runs.filter((r): r is (typeof runs)[number] & { other: Load } => r.other !== undefined);
  const pgRuns = runs.filter((r): r is (typeof runs)[number] & { postgres: Load } => r.postgres !== undefined);
  const pgRatio = pgRuns.length ? median(pgRuns.map((r) => r.postgres.rps / r.baseline.rps)) : NaN;
  const echoRatio = median(echoRuns.map((r) => r.echo.rps / r.baseline.rps));
  const [a, b, o, e] = [medianLoad(runs.map((r) => r.alone)), medianLoad(runs.map((r) => r.baseline)), medianLoad(runs.map((r) => r.ours)), medianLoad(echoRuns.map((r) => r.echo))];
  const us = (l: Load) => 1e6 / l.rps;
  const line = (l: Load) => `${fmt(l.rps, 0)} upd/s, p50 ${l.p50} ms, p99 ${l.p99} ms${l.non2xx ? `, ${l.non2xx} non-2xx` : ''}`;
  const seedRate = SEED_JOBS_PER_DAY / 86_400;
  const rows: Row[] = [
    { measure: `4. webhook fan-out, 20 bots, ${CONNECTIONS} connections, journal JOURNAL_SYNC=full, ack without reply (${rounds} paired rounds)`, botfleet: line(o), baseline: `${line(b)} (fastify + IPC + ack, no journal)`, ratio, target: '>= 0.8', ok: ratio >= 0.8 && o.non2xx === 0 },
    { measure: '4. the same, JOURNAL_SYNC=normal', botfleet: line(n), baseline: 'as above', ratio: normalRatio, target: '>= 0.8', ok: normalRatio >= 0.8 && n.non2xx === 0 },
    pgRuns.length
      ? { measure: '4. the same, the store on PostgreSQL (DATABASE_URL: a local PostgreSQL 15, fsync on, sharing the 2 cores)', botfleet: `${line(medianLoad(pgRuns.map((r) => r.postgres)))}; 200 to ack ${lat(pgLatency!)}`, baseline: `as above (SQLite full: ${fmt(ratio, 2)})`, ratio: pgRatio, target: 'shown', ok: medianLoad(pgRuns.map((r) => r.postgres)).non2xx === 0 ? null : false }
      : { measure: '4. the same, the store on PostgreSQL: not measured (no PostgreSQL binaries on this machine)', botfleet: '-', baseline: '-', ratio: null, target: 'shown', ok: null },
    { measure: `4. the same at ${LATENCY_BOUND_CONNECTIONS} connections (latency-bound: 2 per bot), full`, botfleet: line(medianLoad(lowRuns.map((r) => r.ours))), baseline: line(medianLoad(lowRuns.map((r) => r.baseline))), ratio: median(lowRuns.map((r) => r.ours.rps / r.baseline.rps)), target: 'shown', ok: null },
    { measure: '4. master event-loop delay p99 under that load (full / normal; median of rounds)', botfleet: `${fmt(median(loopP99.ours), 1)} ms / ${fmt(median(loopP99.normal), 1)} ms`, baseline: '-', ratio: null, target: 'shown', ok: null },
    { measure: '4. time from the 200 (commit) to the worker\'s ack, under that load', botfleet: `full: ${lat(oursLatency)}`, baseline: `normal: ${lat(normalLatency)}`, ratio: null, target: 'shown', ok: null },
    ...(otherRuns.length ? [{ measure: '4. the same, workers under SCHED_OTHER (WORKER_SCHED_POLICY=other)', botfleet: line(medianLoad(otherRuns.map((r) => r.other))), baseline: 'as above', ratio: median(otherRuns.map((r) => r.other.rps / r.baseline.rps)), target: 'shown', ok: null }] : []),
    { measure: '4. where the time goes (µs per update at saturation)', botfleet: `botfleet ${fmt(us(o), 0)}`, baseline: `fastify alone ${fmt(us(a), 0)} (parse+routing), +IPC+ack ${fmt(us(b) - us(a), 0)}, +botfleet ${fmt(us(o) - us(b), 0)}`, ratio: null, target: '-', ok: null },
    { measure: '4. webhook fan-out, echo replying via the emulator', botfleet: line(e), baseline: line(medianLoad(echoRuns.map((r) => r.baseline))), ratio: echoRatio, target: 'shown', ok: e.non2xx === 0 ? null : false },
    { measure: '8. sustained rate vs the seed (450,000 jobs/day)', botfleet: `${fmt(o.rps, 0)} upd/s (echo ${fmt(e.rps, 0)})`, baseline: `${fmt(seedRate, 2)} /s`, ratio: e.rps / seedRate, target: '>= 1', ok: e.rps / seedRate >= 1 },
  ];
  return { rows, raw: { runs, echoRuns, lowRuns, loopP99, oursLatency, normalLatency, pgLatency } };
}

/**
 * How long updates wait in the journal while a worker restarts: one webhook bot at a
 * steady 200 updates/s, its worker SIGKILLed mid-load `rounds` times. Per round: the
 * restart time (kill to `running` again, from status polled every 5 ms) and the
 * longest wait (the journal's oldest pending age, polled as often). Target: the
 * wait is at most the restart time + 50 ms.
 */
export async function restartWaitMeasures(rounds: number): Promise<{ rows: Row[]; raw: object }> {
  const p = await startBotfleetPath(NOOP_HANDLER, { RESTART_BACKOFF_MS: '0', HEALTHY_RUN_MS: '1000', MAX_RESTARTS_PER_HOUR: '1000' }, 1);
  const results: Array<{ restartMs: number; waitMs: number; non2xx: number }> = [];
  try {
    const bot = p.bots[0]!;
    for (let i = 0; i < rounds; i++) {
      // A steady sender (autocannon's fixed rate comes in bursts once a second): one POST every 5 ms.
      let id = nextUpdateId;
      nextUpdateId += IDS_PER_RUN;
      let non2xx = 0;
      const inFlight = new Set<Promise<void>>();
      const post = () => {
        const n = id++;
        const body = JSON.stringify({ update_id: n, message: { message_id: n, date: 0, chat: { id: 1 + (n % 50), type: 'private' }, from: { id: 1, is_bot: false, first_name: 'L' }, text: `r ${n}` } });
        const pr = fetch(`${p.url}/webhook/${bot.id}`, { method: 'POST', body, headers: { 'content-type': 'application/json', 'x-telegram-bot-api-secret-token': bot.secret } })
          .then(async (r) => { await r.arrayBuffer(); if (r.status !== 200) non2xx++; }, () => void non2xx++)
          .finally(() => inFlight.delete(pr));
        inFlight.add(pr);
      };
      const sender = setInterval(post, 5);
      await new Promise((r) => setTimeout(r, 1000));
      const before = (await p.status()).workers[0]!;
      const t0 = performance.now();
      process.kill(before.pid!, 'SIGKILL');
      let restartMs = NaN;
      let waitMs = 0;
      while (performance.now() - t0 < 5000) {
        const [st, js] = await Promise.all([p.status(), p.statusGet('/webhook/stats')]);
        const w = st.workers[0]!;
        const age = (JSON.parse(js) as { journal: Record<string, { oldestPendingAgeMs: number | null }> }).journal[w.botId]?.oldestPendingAgeMs ?? 0;
        waitMs = Math.max(waitMs, age);
        if (Number.isNaN(restartMs) && w.state === 'running' && w.pid !== before.pid) restartMs = performance.now() - t0;
        if (!Number.isNaN(restartMs) && age < 50) break;
        await new Promise((r) => setTimeout(r, 5));
      }
      clearInterval(sender);
      await Promise.all(inFlight);
      results.push({ restartMs, waitMs, non2xx });
    }
  } finally {
    await p.stop();
  }
  const restart = median(results.map((r) => r.restartMs));
  const wait = median(results.map((r) => r.waitMs));
  const ok = results.every((r) => r.waitMs <= r.restartMs + 50 && r.non2xx === 0);
  return {
    rows: [{ measure: `4. longest wait in the journal during a worker restart (200 upd/s, ${rounds} kills)`, botfleet: `wait ${fmt(wait, 0)} ms (max ${fmt(Math.max(...results.map((r) => r.waitMs)), 0)})`, baseline: `restart ${fmt(restart, 0)} ms (kill to running), + 50 ms`, ratio: wait / (restart + 50), target: '<= 1 each round, every POST 200', ok }],
    raw: { results },
  };
}

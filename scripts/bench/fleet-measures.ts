import { monitorEventLoopDelay } from 'node:perf_hooks';
/**
 * Measures 1, 2, 3 and 5: worker start, fleet start (with the master's
 * event-loop delay), memory (PSS per idle worker; master RSS and CPU per bot),
 * and crash recovery — each against a bare node-telegram-bot-api child in the
 * same run.
 */

import { forkWorker } from '../../master/lifecycle/child-process.js';
import type { MasterHandle } from '../../master/main.js';
import { benchEnv, endAll, firstForkAt, forkBare, forkBarePollers, makeHome, nextTransition, NOOP_HANDLER, pssBytes, sleep, startEmulator, startFleetIn } from './harness.js';
import { fmt, fmtSummary, summarize, type Row } from './stats.js';
import { fmtStall, watchStalls, type StallReport } from './stalls.js';

/** Measure 1. @returns the rows and the bare fork->ready median (the baseline of measure 5). */
export async function workerStart(runs: number): Promise<{ rows: Row[]; bareMs: number; raw: object }> {
  const emu = await startEmulator(1);
  const ours: number[] = [];
  const bare: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    let ready!: () => void;
    const isReady = new Promise<void>((r) => (ready = r));
    // As the master forks by default: through chrt under SCHED_BATCH (its exec is part of the start).
    const w = await forkWorker({ maxOldSpaceMb: 150, logLevel: 'warn', schedPolicy: 'batch', onOutput: () => undefined, onViolation: () => undefined, onMessage: (m) => (m as { type?: string }).type === 'ready' && ready() });
    w.send({ v: 1, type: 'init', home: process.cwd(), heartbeatIntervalMs: 15_000, drainTimeoutMs: 1000, pollingTimeoutSec: 30, dedupWindowMs: 30_000, skipUpdateIds: [], ackedUpdateIds: [],
      bot: { id: 'bench', name: 'bench', token: emu.bots[0]!.token, apiRoot: emu.apiRoot, mode: 'webhook', handler: 'echo', settings: {}, api: { maxRetries: 3, retryBackoffMs: 300, rateLimitGlobal: 0, rateLimitPerChat: 0 } } });
    await isReady;
    ours.push(performance.now() - t0);
    w.kill('SIGKILL');
    await w.exited;
    const b = await forkBare();
    bare.push(b.ms);
    await endAll([b.child]);
  }
  await emu.stop();
  const o = summarize(ours);
  const b = summarize(bare);
  return {
    bareMs: b.median, raw: { botfleetMs: ours, bareMs: bare },
    rows: [{ measure: '1. worker start (fork -> ready)', botfleet: fmtSummary(o, 'ms'), baseline: fmtSummary(b, 'ms'), ratio: o.median / b.median, target: '<= 1.2', ok: o.median / b.median <= 1.2 }],
  };
}

/** Master RSS/CPU at one fleet size, and (at `mainSize`) fleet start, loop delay, PSS and crash recovery. */
interface SizeResult { n: number; startMs: number; firstForkToPollMs: number; initMs: number; loopMaxMs: number; stalls: StallReport; rssBytes: number; cpuPercent: number; pss?: number[]; recovery?: { ours: number[]; bare: number[] }; bare?: BareFleet }

/** The baseline of measure 2 (and 3's PSS): `n` bare bots forked 2, 4 and 8 at a time; the best start counts. */
interface BareFleet { bestMs: number; byConcurrency: Record<number, number>; loopMaxMs: number; stalls: StallReport; pss: number[] }

/** `n` bots run bare (bare-poller.ts) at concurrency `k` (one run): first fork to every first getUpdates, the loop delay; PSS after a settle when asked. */
async function bareFleet(n: number, k: number, withPss: boolean): Promise<{ ms: number; loopMaxMs: number; stalls: StallReport; pss: number[] }> {
  const emu = await startEmulator(n, { reportFirstPoll: true });
  const loop = monitorEventLoopDelay({ resolution: 5 });
  loop.enable();
  const watch = watchStalls();
  const { children, ms } = await forkBarePollers(emu, k);
  const stalls = watch.stop();
  loop.disable();
  let pss: number[] = [];
  if (withPss) {
    await sleep(3000);
    pss = children.map((c) => pssBytes(c.pid!));
  }
  await endAll(children);
  await emu.stop();
  return { ms, loopMaxMs: loop.max / 1e6, stalls, pss };
}

async function oneSize(n: number, detailed: boolean, kills: number): Promise<SizeResult> {
  // The machine's speed drifts within minutes: the baseline runs right before (2 at a time) and right after (4 at a time) this fleet.
  const before = detailed ? await bareFleet(n, 2, true) : null;
  const emu = await startEmulator(n, { reportFirstPoll: true });
  const home = makeHome(emu, { mode: 'polling', handler: NOOP_HANDLER });
  const ids = emu.bots.map((_, i) => `b${String(i).padStart(3, '0')}`);
  const { master, ms, initMs, loopMaxMs, stalls } = await startFleetIn(benchEnv(home, emu.apiRoot), ids);
  const polledAt = await emu.allPolled() - performance.now() + Date.now();
  const firstForkToPollMs = polledAt - firstForkAt(master.supervisor.status().map((w) => w.pid!));
  await sleep(3000); // settle: first heartbeats, first long polls
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await sleep(5000);
  const cpu = process.cpuUsage(cpu0);
  const cpuPercent = ((cpu.user + cpu.system) / 1000 / (performance.now() - t0)) * 100;
  const r: SizeResult = { n, startMs: ms, firstForkToPollMs, initMs, loopMaxMs, stalls, rssBytes: process.memoryUsage().rss, cpuPercent };
  if (detailed) {
    r.pss = master.supervisor.status().map((w) => pssBytes(w.pid!));
    r.recovery = await crashRecovery(master, ids.slice(0, kills));
  }
  await master.stop();
  await emu.stop();
  if (before) {
    const after4 = await bareFleet(n, 4, false);
    const after8 = await bareFleet(n, 8, false);
    r.bare = { bestMs: Math.min(before.ms, after4.ms, after8.ms), byConcurrency: { 2: before.ms, 4: after4.ms, 8: after8.ms }, loopMaxMs: before.loopMaxMs, stalls: before.stalls, pss: before.pss };
  }
  return r;
}

/**
 * Measure 5: SIGKILL one worker of each bot in turn; time until its replacement is
 * running. After each kill a bare child is forked under the same load (the fleet
 * running), as the fork -> ready baseline.
 */
async function crashRecovery(master: MasterHandle, ids: string[]): Promise<{ ours: number[]; bare: number[] }> {
  const ours: number[] = [];
  const bare: number[] = [];
  for (const id of ids) {
    const pid = master.supervisor.status().find((w) => w.botId === id)!.pid!;
    const back = nextTransition(master, (e) => e.botId === id && e.to === 'running', 15_000, `bot ${id} running again`);
    const t0 = performance.now();
    process.kill(pid, 'SIGKILL');
    await back;
    ours.push(performance.now() - t0);
    await sleep(300);
    const b = await forkBare();
    bare.push(b.ms);
    await endAll([b.child]);
    await sleep(300);
  }
  return { ours, bare };
}

/** Measures 2, 3, 5. `sizes` ascending; the detailed measures run at `mainSize`. */
export async function fleetMeasures(sizes: number[], mainSize: number, kills: number): Promise<{ rows: Row[]; raw: object }> {
  const baseRss = process.memoryUsage().rss;
  const results: SizeResult[] = [];
  for (const n of sizes) results.push(await oneSize(n, n === mainSize, kills));
  const main = results.find((r) => r.n === mainSize)!;
  const { bestMs: bestBare, loopMaxMs: bareLoopMaxMs, stalls: bareStalls, pss: barePss } = main.bare!;
  const ourPss = summarize(main.pss!);
  const bPss = summarize(barePss);
  const rec = summarize(main.recovery!.ours);
  const recBare = summarize(main.recovery!.bare);
  const mb = (b: number) => b / 1048576;
  const rows: Row[] = [
    { measure: `2. fleet start, ${mainSize} polling bots: first fork -> every bot's first getUpdates`, botfleet: `${fmt(main.firstForkToPollMs, 0)} ms (start -> all running ${fmt(main.startMs, 0)} ms)`, baseline: `${fmt(bestBare, 0)} ms bare bots (getMe + getUpdates loop; best of 2, 4 and 8 at a time, run just before and after)`, ratio: main.firstForkToPollMs / bestBare, target: '<= 1.2', ok: main.firstForkToPollMs / bestBare <= 1.2 },
    { measure: `2. master event-loop delay max while forking`, botfleet: `${fmt(main.loopMaxMs)} ms (worst stall: ${fmtStall(main.stalls.worst)}; the master ran at most ${fmt(main.stalls.maxRunMs)} ms in any stall)`, baseline: `${fmt(bareLoopMaxMs)} ms forking bare, 2 at a time (worst: ${fmtStall(bareStalls.worst)}); master init ${fmt(main.initMs, 0)} ms once`, ratio: null, target: '< 50 ms', ok: main.loopMaxMs < 50 },
    { measure: `3. PSS per idle worker at ${mainSize} bots`, botfleet: fmtSummary({ ...ourPss, median: mb(ourPss.median), min: mb(ourPss.min), max: mb(ourPss.max) }, 'MB'), baseline: `${fmt(mb(bPss.median))} MB`, ratio: ourPss.median / bPss.median, target: '<= 1.15', ok: ourPss.median / bPss.median <= 1.15 },
  ];
  for (let i = 0; i < results.length; i++) {
    const r = results[i]!;
    const prev = results[i - 1];
    const slope = prev ? (r.rssBytes - prev.rssBytes) / 1024 / (r.n - prev.n) : (r.rssBytes - baseRss) / 1024 / r.n;
    rows.push({ measure: `3. master at ${r.n} idle bots: RSS, CPU, KB per added bot`, botfleet: `${fmt(mb(r.rssBytes))} MB, ${fmt(r.cpuPercent, 2)}% CPU`, baseline: '-', ratio: null, target: 'flat per bot', ok: null });
    rows[rows.length - 1]!.baseline = `${fmt(slope, 0)} KB/bot`;
  }
  rows.push({ measure: `5. crash recovery (SIGKILL -> running), ${kills} kills`, botfleet: fmtSummary(rec, 'ms'), baseline: `${fmtSummary(recBare, 'ms')} bare fork->ready, same load`, ratio: rec.median / recBare.median, target: '<= 1.3', ok: rec.median / recBare.median <= 1.3 });
  return { rows, raw: { sizes: results } };
}

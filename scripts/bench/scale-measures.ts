/**
 * The scale group (`npm run bench -- --only scale [--scale-n N] [--scale-idle-s S]`): N
 * long-polling bots under `botfleet start` (the real CLI, the default settings but the
 * benchmark's quiet logs and no rate limiter) against the same N bots run bare, one `node`
 * process each, forked 2 at a time, in two baselines: on botfleet's own HTTP path
 * (bare-poller-http.ts: the limit, what the supervisor itself costs) and on `fetch`
 * through the library (bare-poller.ts: what a user writes). Every start is timed from its
 * first fork to the emulator's sight of every bot's first getUpdates. Then, fleet idle:
 * PSS of all its processes, the CPU over S seconds (the machine's, from /proc/stat, and
 * each side's own processes; the workers' also against 100 bare bots run beside them in the
 * same window), the master's RSS, `/metrics` and `/api/workers/status`
 * latency over N real workers, and the stop (SIGTERM to the master's exit, nothing left).
 * The time per bot is also taken at 10 bots: the growth of a start's cost with the fleet.
 */
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { homePaths } from '../../config/load.js';
import { controlRequest } from '../../master/surfaces/control-server.js';
import type { FleetStatus } from '../../master/surfaces/status-server.js';
import { BARE_POLLER, BARE_POLLER_HTTP, BENCH_STATUS_HEADERS, benchEnv, CLI, endAll, firstForkAt, forkBarePollers, makeHome, NOOP_HANDLER, onCleanup, pssBytes, rssBytes, sleep, startEmulator, terminate, track } from './harness.js';
import { fmt, summarize, type Row } from './stats.js';

/** Linux clock ticks per second (USER_HZ, /proc times): 100 on every architecture Node runs on. */
const TICK_MS = 10;
/**
 * From every bot's first getUpdates to the idle measures (ms): an idle Node process is steady
 * only after V8's memory reducer has run its GCs (~8 s after it started, measured with
 * --trace-gc), on both sides alike.
 */
const SETTLE_MS = 30_000;

/** utime + stime of `pid` (ms), from /proc/<pid>/stat fields 14 and 15; 0 once it is gone. */
function cpuMs(pid: number): number {
  try {
    const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(f[11]) + Number(f[12])) * TICK_MS;
  } catch {
    return 0;
  }
}

/** The machine's busy time (ms, all cores: the /proc/stat "cpu" line less idle and iowait). */
function machineBusyMs(): number {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  return (f.reduce((a, b) => a + b, 0) - f[3]! - f[4]!) * TICK_MS;
}

const sumOf = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

/** CPU over `ms` as % of one core: the machine's, and each named group of pids'. */
async function idleCpu(groups: Record<string, number[]>, ms: number): Promise<Record<string, number>> {
  const before = Object.fromEntries(Object.entries(groups).map(([k, pids]) => [k, sumOf(pids.map(cpuMs))]));
  const m0 = machineBusyMs();
  const t0 = performance.now();
  await sleep(ms);
  const wall = performance.now() - t0;
  const out: Record<string, number> = { machine: ((machineBusyMs() - m0) / wall) * 100 };
  for (const [k, pids] of Object.entries(groups)) out[k] = ((sumOf(pids.map(cpuMs)) - before[k]!) / wall) * 100;
  return out;
}

/** Sequential GETs of `url`: the median and max latency (ms). */
async function latency(url: string, rounds: number): Promise<{ median: number; max: number }> {
  const xs: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const t = performance.now();
    const r = await fetch(url, { headers: BENCH_STATUS_HEADERS });
    await r.text();
    if (!r.ok) throw new Error(`GET ${url}: HTTP ${r.status}`);
    xs.push(performance.now() - t);
  }
  const s = summarize(xs);
  return { median: s.median, max: s.max };
}

/** A task left of `pids`: alive and not a zombie. */
const alive = (pid: number) => {
  try {
    return !/^\S+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
};

/** What one botfleet run measured. Times in ms, memory in bytes, CPU in % of one core. */
interface FleetRun {
  n: number; startMs: number; spawnToPolledMs: number;
  pssBytes?: number; masterRssBytes?: number; cpu?: Record<string, number>;
  metrics?: { median: number; max: number }; status?: { median: number; max: number };
  stopMs?: number; leftAfterStop?: number;
}

/**
 * Bare bots on botfleet's HTTP path kept running through botfleet's idle window, so the
 * workers' idle CPU is compared with bare bots' measured in the same 60 s: measured apart
 * (minutes between the windows) the same setups gave 0.90 to 1.45 on this machine, whose
 * neighbours move its speed by +-20 %. They share the node binary's pages with the workers:
 * the workers' PSS is ~3 MB (0.03 %) lower for it at 1000 bots.
 */
const CONTROL_BOTS = 100;

/** `botfleet start` over `n` polling bots with the defaults; with `idleMs`, the idle measures (beside `control` bare bots) and the stop. */
async function botfleetRun(n: number, idleMs: number | null, control = 0): Promise<FleetRun> {
  const controlEmu = control > 0 ? await startEmulator(control, { reportFirstPoll: true }) : null;
  const controls = controlEmu ? (await forkBarePollers(controlEmu, 2, BARE_POLLER_HTTP)).children : [];
  const emu = await startEmulator(n, { reportFirstPoll: true });
  const home = makeHome(emu, { mode: 'polling', handler: NOOP_HANDLER });
  // The defaults (the benchmarks' per-core room taken back), quiet logs, no rate limiter.
  const env = benchEnv(home, emu.apiRoot, { MAX_WORKERS_PER_CORE: '0' });
  const t0 = performance.now();
  const proc = track(spawn(process.execPath, [CLI, 'start'], { env: { ...process.env, ...env }, stdio: 'ignore' }));
  onCleanup(() => terminate(proc));
  const polled = await emu.allPolled();
  const polledAt = Date.now();
  const status = await waitAllRunning(homePaths(home).socket, n);
  const pids = status.workers.map((w) => w.pid!);
  const r: FleetRun = { n, startMs: polledAt - firstForkAt(pids), spawnToPolledMs: polled - t0 };
  if (idleMs !== null) {
    await sleep(SETTLE_MS);
    const master = proc.pid!;
    r.pssBytes = sumOf([master, ...pids].map(pssBytes));
    r.masterRssBytes = rssBytes(master);
    r.cpu = await idleCpu({ master: [master], workers: pids, ...(control > 0 ? { control: controls.map((c) => c.pid!) } : {}) }, idleMs);
    const { status: port } = JSON.parse(fs.readFileSync(path.join(home, 'run', 'ports.json'), 'utf8')) as { status: number };
    r.metrics = await latency(`http://127.0.0.1:${port}/metrics`, 20);
    r.status = await latency(`http://127.0.0.1:${port}/api/workers/status`, 20);
    const s0 = performance.now();
    proc.kill('SIGTERM');
    await once(proc, 'exit');
    r.stopMs = performance.now() - s0;
    r.leftAfterStop = pids.filter(alive).length;
  }
  await terminate(proc);
  await emu.stop();
  await endAll(controls);
  await controlEmu?.stop();
  return r;
}

/** The fleet's status over the control socket once `n` workers are running (asked every 500 ms: the asking costs the master). */
async function waitAllRunning(socket: string, n: number): Promise<FleetStatus> {
  const deadline = Date.now() + 600_000;
  for (;;) {
    const s = await (controlRequest(socket, { cmd: 'status' }, 10_000) as Promise<FleetStatus>).catch(() => null);
    if (s && s.workers.length === n && s.workers.every((w) => w.state === 'running' && w.pid)) return s;
    if (Date.now() > deadline) throw new Error(`${n} workers were not all running within 10 minutes`);
    await sleep(500);
  }
}

/** What one bare run measured (as {@link FleetRun}). */
interface BareRun { n: number; startMs: number; pssBytes: number; cpu: Record<string, number> }

/** `n` bare bots of `script`, forked 2 at a time; then PSS and idle CPU. */
async function bareRun(n: number, script: string, idleMs: number): Promise<BareRun> {
  const emu = await startEmulator(n, { reportFirstPoll: true });
  const { children, ms } = await forkBarePollers(emu, 2, script);
  await sleep(SETTLE_MS);
  const pids = children.map((c) => c.pid!);
  const r: BareRun = { n, startMs: ms, pssBytes: sumOf(pids.map(pssBytes)), cpu: await idleCpu({ bots: pids }, idleMs) };
  await endAll(children);
  await emu.stop();
  return r;
}

/** The scale group at `n` bots, idle measures over `idleMs`. */
export async function scaleMeasures(n: number, idleMs: number): Promise<{ rows: Row[]; raw: object }> {
  const say = (s: string) => process.stderr.write(`[scale] ${s}\n`);
  say(`bare, botfleet's HTTP path, ${n} bots`);
  const sameHttp = await bareRun(n, BARE_POLLER_HTTP, idleMs);
  const small: FleetRun[] = [];
  for (let i = 0; i < 3; i++) small.push(await botfleetRun(10, null));
  say(`botfleet, ${n} bots`);
  const control = Math.min(CONTROL_BOTS, n);
  const ours = await botfleetRun(n, idleMs, control);
  say(`bare, fetch, ${n} bots`);
  const onFetch = await bareRun(n, BARE_POLLER, idleMs);
  return { rows: scaleRows(n, idleMs, control, ours, small, sameHttp, onFetch), raw: { n, idleMs, botfleet: ours, botfleetAt10: small, bareSameHttp: sameHttp, bareFetch: onFetch } };
}

function scaleRows(n: number, idleMs: number, control: number, ours: FleetRun, small: FleetRun[], sameHttp: BareRun, onFetch: BareRun): Row[] {
  const mb = (b: number) => fmt(b / 1048576, 0);
  const perBotAt10 = summarize(small.map((r) => r.startMs / 10)).median;
  const perBot = ours.startMs / n;
  const cpu = ours.cpu!;
  const idleS = fmt(idleMs / 1000, 0);
  const versus = (ratio: number, target: number, measure: string, botfleet: string, baseline: string): Row => ({ measure, botfleet, baseline, ratio, target: `<= ${target}`, ok: ratio <= target });
  const under = (measure: string, v: number, unit: string, limit: number): Row => ({ measure, botfleet: `${fmt(v, unit === '%' ? 2 : 1)} ${unit}`, baseline: '-', ratio: null, target: `< ${limit} ${unit}`, ok: v < limit });
  return [
    versus(ours.startMs / sameHttp.startMs, 1.2, `scale: start, ${n} polling bots (first fork -> every first getUpdates)`, `${fmt(ours.startMs / 1000)} s (spawn -> all polled ${fmt(ours.spawnToPolledMs / 1000)} s)`, `${fmt(sameHttp.startMs / 1000)} s bare on botfleet's HTTP path, 2 at a time; on fetch ${fmt(onFetch.startMs / 1000)} s (${fmt(ours.startMs / onFetch.startMs, 2)}x)`),
    versus(perBot / perBotAt10, 1.3, `scale: time per bot at ${n} against at 10`, `${fmt(perBot, 0)} ms`, `${fmt(perBotAt10, 0)} ms at 10 (median of 3)`),
    versus(ours.pssBytes! / sameHttp.pssBytes, 1, `scale: PSS of all processes, ${n} bots idle`, `${mb(ours.pssBytes!)} MB (master and workers)`, `${mb(sameHttp.pssBytes)} MB bare on botfleet's HTTP path; on fetch ${mb(onFetch.pssBytes)} MB`),
    under(`scale: master RSS, ${n} bots idle`, ours.masterRssBytes! / 1048576, 'MB', 150),
    under(`scale: master CPU, ${n} bots idle over ${idleS} s`, cpu.master!, '%', 2),
    versus((cpu.workers! / n) / (cpu.control! / control), 1.1, `scale: CPU of all workers idle over ${idleS} s (% of a core), per bot against ${control} bare bots in the same window`, `${fmt(cpu.workers!, 2)} % (machine ${fmt(cpu.machine!, 1)} %)`,
      `${fmt((cpu.control! / control) * n, 2)} % for ${n} at the ${control} bare bots' rate; bare apart ${fmt(sameHttp.cpu.bots!, 2)} % (${fmt(cpu.workers! / sameHttp.cpu.bots!, 2)}x, machine ${fmt(sameHttp.cpu.machine!, 1)} %); on fetch ${fmt(onFetch.cpu.bots!, 2)} %`),
    under(`scale: GET /metrics, ${n} real workers (median; max ${fmt(ours.metrics!.max, 0)} ms)`, ours.metrics!.median, 'ms', 100),
    under(`scale: GET /api/workers/status, ${n} real workers (median; max ${fmt(ours.status!.max, 0)} ms)`, ours.status!.median, 'ms', 50),
    { ...under(`scale: stop (SIGTERM -> the master's exit), ${n} bots; workers left after`, ours.stopMs! / 1000, 's', 30), botfleet: `${fmt(ours.stopMs! / 1000)} s, ${ours.leftAfterStop} left`, ok: ours.stopMs! < 30_000 && ours.leftAfterStop === 0 },
  ];
}

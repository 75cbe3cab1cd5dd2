/**
 * Shared parts of the benchmarks: the Bot API emulator in its own process, a
 * temporary home with N bots in the registry, an in-process master (so its event
 * loop and transitions can be observed), bare baseline children, /proc readings.
 * Every process started here is tracked and ended by {@link cleanupAll}.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { watchStalls, type StallReport } from './stalls.js';
import os from 'node:os';
import path from 'node:path';
import { EventEmitter, once } from 'node:events';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { loadConfig, homePaths } from '../../config/load.js';
import { controlRequest } from '../../master/surfaces/control-server.js';
import type { FleetStatus } from '../../master/surfaces/status-server.js';
import { startMaster, type MasterHandle } from '../../master/main.js';
import { cgroupName } from '../../master/host/bot-limits.js';
import { removeGroupsNamed } from '../../master/host/cgroups.js';
import { removeUidLock } from '../../master/host/uid-locks.js';
import { openHomeRegistry } from '../../master/store/registry.js';
import type { TransitionEvent } from '../../master/lifecycle/supervisor.js';

const here = (rel: string) => fileURLToPath(new URL(rel, import.meta.url));
export const BARE_CHILD = here('./bare-child.js');
/** The like-for-like bare bot: node-telegram-bot-api, getMe, a getUpdates loop (bare-poller.ts). */
export const BARE_POLLER = here('./bare-poller.js');
/** The same bare bot on botfleet's own HTTP path (bare-poller-http.ts): the scale benchmark's limit. */
export const BARE_POLLER_HTTP = here('./bare-poller-http.js');
export const NOOP_HANDLER = here('./noop-handler.js');
export const MISBEHAVE_HANDLER = here('../../test/fixtures/misbehave.js');
const EMULATOR = here('../emulator/main.js');
export const CLI = here('../../cli/main.js');

const tracked = new Set<ChildProcess>();
const cleanups: Array<() => Promise<void> | void> = [];

/** Track a child process so it is ended even when a measure fails. */
export function track(p: ChildProcess): ChildProcess {
  tracked.add(p);
  p.once('exit', () => tracked.delete(p));
  return p;
}

/** SIGTERM `p` and wait for its exit; no-op when it has already exited. */
export async function terminate(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  p.kill('SIGTERM');
  await once(p, 'exit');
}

/** Register a cleanup step (run in reverse order by {@link cleanupAll}). */
export const onCleanup = (fn: () => Promise<void> | void) => cleanups.push(fn);

/** End everything this harness started. */
export async function cleanupAll(): Promise<void> {
  for (const fn of cleanups.splice(0).reverse()) await Promise.resolve(fn()).catch(() => undefined);
  for (const p of tracked) if (p.pid) try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
}

/** A standalone emulator process with `n` bots. */
export interface EmulatorProcess {
  apiRoot: string;
  bots: Array<{ id: number; username: string; token: string }>;
  stop(): Promise<void>;
  /** With `reportFirstPoll`: resolves (performance.now()) once the emulator has seen a getUpdates of every bot in `ids` (all when omitted). */
  allPolled(ids?: number[]): Promise<number>;
  /** With `reportFirstPoll`: resolves once bot `id`'s first getUpdates was seen. */
  polled(id: number): Promise<void>;
}

/** The emulator as its own process with `n` bots; `reportFirstPoll` has it tell each bot's first getUpdates. */
export async function startEmulator(n: number, o: { reportFirstPoll?: boolean } = {}): Promise<EmulatorProcess> {
  const p = track(spawn(process.execPath, [EMULATOR, '--port', '0', '--bots', String(n), '--webhook-retry-ms', '200', ...(o.reportFirstPoll ? ['--report-first-poll'] : [])], { stdio: ['ignore', 'pipe', 'inherit'] }));
  const lines = readline.createInterface({ input: p.stdout! });
  const got: Array<Record<string, unknown>> = [];
  const polledIds = new Set<number>();
  const polls = new EventEmitter();
  polls.setMaxListeners(0);
  const setUp = new Promise<void>((resolve) => lines.on('line', (line) => {
    const m = JSON.parse(line) as Record<string, unknown>;
    if (typeof m.firstPoll === 'number') {
      polledIds.add(m.firstPoll);
      polls.emit('poll', m.firstPoll);
      return;
    }
    got.push(m);
    if (got.length === n + 1) resolve();
  }));
  await setUp;
  const stop = () => terminate(p);
  onCleanup(stop);
  const bots = got.slice(1) as EmulatorProcess['bots'];
  const polled = (id: number) => new Promise<void>((resolve) => {
    if (polledIds.has(id)) return resolve();
    const on = (x: number) => x === id && (polls.off('poll', on), resolve());
    polls.on('poll', on);
  });
  const allPolled = async (ids = bots.map((b) => b.id)) => {
    await Promise.all(ids.map(polled));
    return performance.now();
  };
  return { apiRoot: String(got[0]!.apiRoot), bots, stop, polled, allPolled };
}

/** A temporary home whose registry holds one bot per emulator bot (ids b000, b001, ...). */
export function makeHome(emu: EmulatorProcess, opts: { mode: 'polling' | 'webhook'; handler: string }): string {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'botfleet-bench-'));
  onCleanup(() => {
    fs.rmSync(home, { recursive: true, force: true });
    removeGroupsNamed(cgroupName(home)); // a master a failed measure killed could not remove its bots' groups
  });
  const p = homePaths(home);
  const r = openHomeRegistry(p, undefined);
  emu.bots.forEach((b, i) => r.add({ id: `b${String(i).padStart(3, '0')}`, name: b.username, token: b.token, mode: opts.mode, handler: opts.handler }));
  r.close();
  return home;
}

/** Settings for benchmark fleets: room for 300 workers on 2 cores, quiet logs. */
let homesMade = 0;
/** The status server's token in benchmark fleets (not a secret: loopback, a throwaway home). */
export const BENCH_STATUS_TOKEN = 'bench-status-token-0123456789';
/** Headers for the status server of a benchmark fleet. */
export const BENCH_STATUS_HEADERS: Readonly<Record<string, string>> = { authorization: `Bearer ${BENCH_STATUS_TOKEN}` };

export function benchEnv(home: string, apiRoot: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const uidBase = String(2_000_000 + (process.pid % 10_000) * 10_000 + (homesMade++ % 10) * 1000);
  onCleanup(() => removeUidLock(extra.WORKER_UID_BASE ?? uidBase)); // run after the masters started later have stopped
  return {
    BOTFLEET_HOME: home, TELEGRAM_API_ROOT: apiRoot, STATUS_PORT: '0', LOG_LEVEL: 'warn', MAX_WORKERS_PER_CORE: '500',
    POLLING_TIMEOUT_SEC: '30', WEBHOOK_SECRET: 'bench-secret', STATUS_AUTH: `bearer:${BENCH_STATUS_TOKEN}`,
    // The baselines' bare children have no rate limiter; neither do ours here.
    RATE_LIMIT_GLOBAL: '0', RATE_LIMIT_PER_CHAT: '0',
    // A uid range of its own per home: masters of two homes alive at once may not share one (the master refuses).
    WORKER_UID_BASE: uidBase,
    ...extra,
  };
}

/**
 * Start a master in this process; resolves once `ids` are all running. `ms` is the
 * whole time; `initMs` the synchronous setup before it serves (SQLite, servers);
 * `loopMaxMs` the event loop's worst delay from then until all are running, which
 * is when forking happens; `stalls` what the worst stalls were made of (stalls.ts).
 */
export async function startFleetIn(env: NodeJS.ProcessEnv, ids: string[]): Promise<{ master: MasterHandle; ms: number; initMs: number; loopMaxMs: number; stalls: StallReport }> {
  const waiting = new Set(ids);
  const t0 = performance.now();
  let resolveAll!: () => void;
  const all = new Promise<void>((r) => (resolveAll = r));
  const loop = monitorEventLoopDelay({ resolution: 5 });
  const master = await startMaster(loadConfig({}, env));
  const initMs = performance.now() - t0;
  loop.enable();
  const stalls = watchStalls();
  onCleanup(() => master.stop().then(() => undefined));
  const on = (e: TransitionEvent) => {
    if (e.to === 'running') waiting.delete(e.botId);
    if (waiting.size === 0) resolveAll();
  };
  master.supervisor.on('transition', on);
  for (const w of master.supervisor.status()) if (w.state === 'running') waiting.delete(w.botId);
  if (waiting.size === 0) resolveAll();
  await all;
  loop.disable();
  master.supervisor.off('transition', on);
  return { master, ms: performance.now() - t0, initMs, loopMaxMs: loop.max / 1e6, stalls: stalls.stop() };
}

/** A master run by the real CLI (`botfleet start`) in its own process. */
export interface CliMaster {
  process: ChildProcess;
  /** Fleet status over the control socket. */
  status(): Promise<FleetStatus>;
  /** SIGTERM, and wait for the exit. */
  stop(): Promise<void>;
}

/**
 * Start `botfleet start` with `env` (from {@link benchEnv}) and wait until `n`
 * workers are running (polled over the control socket every 20 ms).
 * @returns the master and the time from spawn to all running (ms)
 */
export async function startCliMaster(env: NodeJS.ProcessEnv, n: number): Promise<{ master: CliMaster; ms: number }> {
  const socket = homePaths(env.BOTFLEET_HOME!).socket;
  const t0 = performance.now();
  const proc = track(spawn(process.execPath, [CLI, 'start'], { env: { ...process.env, ...env }, stdio: 'ignore' }));
  const stop = () => terminate(proc);
  onCleanup(stop);
  const status = () => controlRequest(socket, { cmd: 'status' }, 5000) as Promise<FleetStatus>;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`the master exited with code ${proc.exitCode} before its workers ran`);
    const s = fs.existsSync(socket) ? await status().catch(() => null) : null;
    if (s && s.workers.length === n && s.workers.every((w) => w.state === 'running')) break;
    await sleep(20);
  }
  return { master: { process: proc, status, stop }, ms: performance.now() - t0 };
}

/**
 * Fork a bare baseline child with exactly the options a botfleet worker gets
 * (detached process group, piped stdio, V8 heap cap), so a ratio isolates our code.
 * Resolves with it and its fork -> ready time (ms).
 */
export async function forkBare(): Promise<{ child: ChildProcess; ms: number }> {
  const t0 = performance.now();
  let ready!: () => void;
  const isReady = new Promise<void>((r) => (ready = r));
  // Node's own IPC (the baseline is the plain forwarder, not botfleet's bounded channel).
  const child = track(fork(BARE_CHILD, [], { detached: true, execArgv: ['--max-old-space-size=150'], serialization: 'json', stdio: ['ignore', 'pipe', 'pipe', 'ipc'] }));
  child.stdout!.resume();
  child.stderr!.resume();
  child.once('message', () => ready());
  await isReady;
  return { child, ms: performance.now() - t0 };
}

/**
 * `emu`'s bots run bare, one `node` process per bot (bare-poller.ts), forked `concurrency`
 * at a time, each slot taken again once its bot's first getUpdates reached the emulator.
 * `script`: the bare bot (default {@link BARE_POLLER}, on `fetch`).
 * @returns the children and the time from the first fork to every bot's first getUpdates (ms)
 */
export async function forkBarePollers(emu: EmulatorProcess, concurrency: number, script = BARE_POLLER): Promise<{ children: ChildProcess[]; ms: number }> {
  const children: ChildProcess[] = [];
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < emu.bots.length) {
      const bot = emu.bots[next++]!;
      children.push(track(spawn(process.execPath, ['--max-old-space-size=150', script], {
        detached: true, stdio: 'ignore', env: { ...process.env, BENCH_TOKEN: bot.token, BENCH_API_ROOT: emu.apiRoot },
      })));
      await emu.polled(bot.id);
    }
  }));
  const end = Date.now();
  return { children, ms: end - firstForkAt(children.map((c) => c.pid!)) };
}

/**
 * When the earliest of `pids` was forked, as wall-clock ms: the kernel's start time of each
 * (/proc/<pid>/stat field 22, in clock ticks of 10 ms since boot). The same clock for
 * botfleet's workers and bare bots, so both fleet starts are timed from their first fork.
 */
export function firstForkAt(pids: number[]): number {
  const ticks = Math.min(...pids.map((pid) => Number(fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[19])));
  const uptimeMs = Number(fs.readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * 1000;
  return Date.now() - uptimeMs + ticks * 10;
}

/** End bare children and wait for them. */
export async function endAll(children: ChildProcess[]): Promise<void> {
  await Promise.all(children.map(async (c) => {
    if (c.exitCode !== null || c.signalCode !== null) return;
    c.kill('SIGKILL');
    await once(c, 'exit');
  }));
}

/** Proportional set size of `pid` in bytes (shared pages split among sharers), from smaps_rollup. */
export function pssBytes(pid: number): number {
  const m = /^Pss:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

/** Resident set size of `pid` in bytes, from /proc/<pid>/status. */
export function rssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

/** Private memory of `pid` (anonymous + shared memory, bytes: /proc status RssAnon + RssShmem): what its cgroup is charged, shared libraries left out. */
export function privateBytes(pid: number): number {
  const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN);
  return (kb('RssAnon') + kb('RssShmem')) * 1024;
}

/** Resolves when `pred` holds for a transition of the master, or rejects after `ms`. */
export function nextTransition(master: MasterHandle, pred: (e: TransitionEvent) => boolean, ms: number, what: string): Promise<TransitionEvent> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      master.supervisor.off('transition', on);
      reject(new Error(`${what} did not happen within ${ms} ms`));
    }, ms);
    const on = (e: TransitionEvent) => {
      if (!pred(e)) return;
      clearTimeout(timer);
      master.supervisor.off('transition', on);
      resolve(e);
    };
    master.supervisor.on('transition', on);
  });
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

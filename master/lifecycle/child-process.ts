/**
 * Forking and ending one worker process. Each worker is spawned detached, so it
 * leads its own process group: a stop can SIGKILL the whole group (grandchildren
 * a handler spawned die too; with per-bot uids, see host/isolation.ts, every
 * process of the bot's uid dies as well).
 *
 * The master distrusts its children (DESIGN.md). There is no Node IPC channel:
 * Node's parser runs inside the master and one line of garbage written to the
 * channel's fd threw an uncaught SyntaxError that killed the master and the
 * fleet. Instead the worker gets two channels of ours (socket pairs, as libuv's pipes are;
 * made and spawned off the master's loop by host/spawner.ts):
 * - fd 3, master -> worker: newline-delimited JSON, written by the master only
 *   (the master never reads it: what a worker writes there stays in the kernel
 *   buffer and at most one 16 KiB stream buffer);
 * - fd 4, worker -> master: newline-delimited JSON read by bounded code of ours
 *   (common/line-splitter.ts): at most {@link MAX_FRAME_BYTES} a frame,
 *   {@link FRAME_BUDGET} frames and {@link FRAME_BYTE_BUDGET} bytes a second.
 *   A frame that is too long, does not parse, or passes the budget is a protocol
 *   violation, reported through `onViolation`; nothing a worker sends can throw here.
 * stdout/stderr go through the same splitter with {@link MAX_OUTPUT_LINE_BYTES}
 * (longer lines are cut and marked). The token travels only in the `init` message.
 * JSON over our own channel costs what Node's 'json' IPC serialization cost (it is
 * the same format: JSON.stringify plus a newline per message).
 */
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { createLineSplitter } from '../../common/line-splitter.js';
import { ErrorCodes, errorMessage, fail } from '../../common/errors.js';
import type { MasterMessage } from '../../worker/protocol.js';
import { createBudget } from '../../common/budget.js';
import type { ForkIsolation } from '../host/isolation.js';
import { WORKER_ENTRY } from '../host/worker-entry.js';
import { spawnOffLoop, type SpawnedProcess } from '../host/spawner.js';
import { dropArgs, joinArgs, limitArgs, oomArgs, SETPRIV, setprivAvailable, toolRuns } from '../host/privileges.js';

export { WORKER_ENTRY };
export type { ForkIsolation };


/**
 * The Linux scheduling policy workers run under (sched(7); systemd's
 * `CPUSchedulingPolicy=`). `batch` is SCHED_BATCH: the same CPU share as
 * SCHED_OTHER at the same nice value, but a worker woken by an IPC message does
 * not preempt the running master. Under webhook load every update is such a
 * wake-up; without it the master is switched out on each IPC write (measured:
 * webhook throughput +10-22% with `batch`, median per run on 2 cores, same p99;
 * docs/benchmarks.md).
 */
export type WorkerSchedPolicy = 'batch' | 'other';

/** util-linux `chrt`, which sets the policy and then execs node (same pid, same fds). */
const CHRT = 'chrt';

/**
 * Whether workers can be started under SCHED_BATCH here: `chrt --batch 0 true`
 * runs (Linux with util-linux). Probed once (~2 ms, synchronous) and remembered.
 */
export const batchSchedulingAvailable = (): boolean => toolRuns(CHRT, ['--batch', '0', 'true']);

/**
 * Largest worker -> master frame, bytes. The largest legitimate one is a `dlq`
 * message carrying a webhook update (body limit 1 MiB; JSON re-encoding can grow
 * escapes). Memory held for one child's channel is at most this plus one 64 KiB read.
 */
export const MAX_FRAME_BYTES = 4 * 1024 * 1024;
/** Frames per second a worker may send. Workers batch per event-loop turn; under full webhook load one sends < 2000/s. */
export const FRAME_BUDGET = 20_000;
/** Channel bytes per second a worker may send. */
export const FRAME_BYTE_BUDGET = 64 * 1024 * 1024;
/** Longest stdout/stderr line kept (bytes); longer lines are cut and marked `truncated`. */
export const MAX_OUTPUT_LINE_BYTES = 16 * 1024;
/** Bytes the master may hold queued for a worker that does not read its channel before that is a violation. */
export const MAX_QUEUED_TO_WORKER_BYTES = 64 * 1024 * 1024;

/**
 * The environment a worker gets: this allowlist, not the master's environment
 * minus a denylist (a key or secret passed to the master by env never reaches a bot).
 */
export const WORKER_ENV_ALLOWLIST = ['PATH', 'HOME', 'LANG', 'LC_ALL', 'TZ', 'NODE_ENV', 'NODE_EXTRA_CA_CERTS', 'HTTPS_PROXY', 'HTTP_PROXY', 'NO_PROXY', 'https_proxy', 'http_proxy', 'no_proxy'];

/**
 * glibc's malloc arenas of a worker unless the operator's environment says otherwise: one.
 * A worker's threads (V8's platform, libuv's pool) each got an arena of their own; at one,
 * an idle bot measured ~190 KB smaller (bench: scale, 20 bots, PSS), and a bot's native
 * allocations are few. glibc's tunable: https://www.gnu.org/software/libc/manual/html_node/Memory-Allocation-Tunables.html
 */
const WORKER_MALLOC_ARENA_MAX = '1';

/** The worker's environment from `env`: the allowlist, plus the variables the worker itself reads, and its malloc arenas. */
export function workerEnv(env: NodeJS.ProcessEnv, logLevel: string, home?: string): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const k of WORKER_ENV_ALLOWLIST) if (env[k] !== undefined) out[k] = env[k];
  out.MALLOC_ARENA_MAX = env.MALLOC_ARENA_MAX ?? WORKER_MALLOC_ARENA_MAX;
  out.LOG_LEVEL = logLevel;
  out.BOTFLEET_WORKER = '1';
  if (home !== undefined) out.HOME = home;
  return out;
}

/** How a worker ended. */
export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A forked worker. */
export interface WorkerProcess {
  readonly pid: number;
  /**
   * Send a message on the worker's channel (fd 3).
   * @throws BotfleetError `BF_ERR_IPC_CHANNEL_CLOSED` when the channel is gone,
   * `BF_ERR_IPC_SERIALIZE` when the message cannot be serialized (too deep, a cycle).
   */
  send(m: MasterMessage): void;
  /** SIGKILL (or `signal`) the worker's whole process group; no-op when already gone. */
  kill(signal?: NodeJS.Signals): void;
  /** Resolves once the process has exited and its channel was read to the end (a grandchild holding the channel open delays it at most 250 ms). */
  readonly exited: Promise<ExitInfo>;
}

/** Options for {@link forkWorker}. */
export interface ForkOptions {
  /** V8 old-space ceiling (MB) so a runaway heap dies fast instead of eating the machine. */
  maxOldSpaceMb: number;
  /** V8 semi-space cap (MB, `--max-semi-space-size`); 0 or absent: V8's own. */
  semiSpaceMb?: number;
  logLevel: string;
  /** Each output line of the worker (stdout JSON or stderr text); `truncated` when it was cut at {@link MAX_OUTPUT_LINE_BYTES}. */
  onOutput(line: string, stream: 'stdout' | 'stderr', truncated: boolean): void;
  /** Each frame the worker sent, JSON-parsed but not yet validated (see parseWorkerMessage). */
  onMessage(m: unknown): void;
  /** The worker broke the channel's limits (called once; the caller kills it with reason `protocol`). */
  onViolation(why: string): void;
  entry?: string;
  /** Default `other`; `batch` falls back to `other` where {@link batchSchedulingAvailable} is false. */
  schedPolicy?: WorkerSchedPolicy;
  isolation?: ForkIsolation;
  /** Monotonic clock (ms) for the channel budget; default performance.now. */
  now?: () => number;
}

/** Read the worker's channel (fd 4): bounded frames, a per-second budget, one violation at most. */
function readChannel(stream: Readable, o: ForkOptions): void {
  const now = o.now ?? (() => performance.now());
  const frames = createBudget(FRAME_BUDGET);
  const bytes = createBudget(FRAME_BYTE_BUDGET);
  let broken = false;
  const violate = (why: string) => {
    if (broken) return;
    broken = true;
    stream.destroy();
    o.onViolation(why);
  };
  const splitter = createLineSplitter({
    maxLineBytes: MAX_FRAME_BYTES,
    onLine(line, truncated) {
      if (broken) return;
      if (truncated) return violate(`a message over ${MAX_FRAME_BYTES} bytes`);
      const t = now();
      if (!frames.take(1, t) || !bytes.take(line.length, t)) return violate(`over ${FRAME_BUDGET} messages or ${FRAME_BYTE_BUDGET} bytes per second`);
      let m: unknown;
      try {
        m = JSON.parse(line.toString('utf8'));
      } catch {
        return violate('a message that is not JSON');
      }
      o.onMessage(m);
    },
  });
  stream.on('data', (chunk: Buffer) => splitter.push(chunk));
  stream.on('error', () => undefined);
  stream.resume();
}

/** After a worker's exit, how long its channel may take to deliver what it wrote last (ms). */
const CHANNEL_DRAIN_MS = 250;

/** Read stdout or stderr: bounded lines, linear time. */
function readOutput(stream: Readable, name: 'stdout' | 'stderr', o: ForkOptions): void {
  const splitter = createLineSplitter({
    maxLineBytes: MAX_OUTPUT_LINE_BYTES,
    onLine: (line, truncated) => o.onOutput(line.toString('utf8'), name, truncated),
  });
  stream.on('data', (chunk: Buffer) => splitter.push(chunk));
  stream.on('end', () => splitter.end());
  stream.on('error', () => undefined);
  stream.resume();
}

/**
 * Spawn a worker, off the master's loop (host/spawner.ts). @throws BotfleetError `BF_ERR_FORK`
 * when the process could not be started (EMFILE, EAGAIN, ENOMEM, a bad uid): a failed start
 * of that bot, never an uncaught error; its `spawnError` resolves to the kernel's error
 * (see {@link forkFailureMessage}).
 */
export async function forkWorker(o: ForkOptions): Promise<WorkerProcess> {
  const child = await spawnWorker(o);
  const pid = child.pid;
  const [stdout, stderr, toWorker, fromWorker] = child.stdio as [Socket, Socket, Socket, Socket];
  // The master never reads fd 3: paused, at most one stream buffer of whatever a worker writes there.
  toWorker.pause();
  toWorker.on('error', () => undefined);
  readOutput(stdout, 'stdout', o);
  readOutput(stderr, 'stderr', o);
  readChannel(fromWorker, o);
  return {
    pid,
    exited: exitAfterChannel(child.exited, fromWorker),
    send(m) {
      if (toWorker.destroyed || !toWorker.writable) throw fail(ErrorCodes.IPC_CHANNEL_CLOSED, `channel to worker ${pid} is closed`);
      let line: string;
      try {
        line = JSON.stringify(m) + '\n';
      } catch (err) {
        throw fail(ErrorCodes.IPC_SERIALIZE, `message for worker ${pid} cannot be serialized: ${(err as Error).message}`, err);
      }
      if (toWorker.writableLength > MAX_QUEUED_TO_WORKER_BYTES) {
        o.onViolation(`not reading its channel (${toWorker.writableLength} bytes queued)`);
        throw fail(ErrorCodes.IPC_CHANNEL_CLOSED, `worker ${pid} is not reading its channel`);
      }
      toWorker.write(line);
    },
    kill(signal = 'SIGKILL') {
      if (child.exit() !== null) return;
      for (const target of [-pid, pid]) {
        try {
          return void process.kill(target, signal);
        } catch {
          // no group (yet): the process itself; else already gone
        }
      }
    },
  };
}

/**
 * The process itself: its own group, the allowlisted env, under setpriv (the bot's uid,
 * no capabilities, `no_new_privs`: host/privileges.ts) and chrt when `batch`. No `cwd`:
 * the worker changes to its data directory itself, once it runs as the bot's uid.
 * fds 1-4 are socket pairs of the master's: stdout, stderr, the channel in and out.
 * @throws BotfleetError `BF_ERR_FORK` (with `spawnError`, host/spawner.ts)
 */
function spawnWorker(o: ForkOptions): Promise<SpawnedProcess> {
  const iso = o.isolation ?? {};
  const env = workerEnv(process.env, o.logLevel, iso.home);
  const command = workerCommand(o, iso);
  // Without setpriv (checked at start: only for a master with no capability to pass on), libuv switches the uid.
  const ids = iso.uid !== undefined && !setprivAvailable() ? { uid: iso.uid, gid: iso.gid ?? iso.uid } : {};
  return spawnOffLoop(command[0]!, command.slice(1), { env, stdio: 4, ...ids });
}

/** argv of a worker, each tool exec'ing the next (one pid): [sh joining its cgroup, oom_score_adj] or [choom], [setpriv …] [prlimit] [chrt --batch 0] node <flags> <entry>. */
export function workerCommand(o: Pick<ForkOptions, 'maxOldSpaceMb' | 'semiSpaceMb' | 'schedPolicy' | 'entry'>, iso: ForkIsolation): string[] {
  const semi = o.semiSpaceMb ? [`--max-semi-space-size=${o.semiSpaceMb}`] : [];
  const nodeArgs = [`--max-old-space-size=${o.maxOldSpaceMb}`, ...semi, ...(iso.nodeFlags ?? []), o.entry ?? WORKER_ENTRY];
  // chrt sets the policy and execs node; setpriv drops privileges and execs chrt: one pid, the same fds.
  const sched = o.schedPolicy === 'batch' && batchSchedulingAvailable() ? [CHRT, '--batch', '0'] : [];
  const drop = setprivAvailable() ? [SETPRIV, ...dropArgs(iso)] : [];
  const join = joinArgs(iso.cgroupProcs ?? []);
  return [...(join.length > 0 ? join : oomArgs()), ...drop, ...limitArgs(iso.nproc), ...sched, process.execPath, ...nodeArgs];
}

/**
 * The one-line reason of a failed fork, with the kernel's error code and the path it
 * names (e.g. `fork failed: spawn setpriv EAGAIN`), waiting at most a few ms for it.
 */
export async function forkFailureMessage(err: unknown): Promise<string> {
  const later = (err as { spawnError?: Promise<Error | undefined> } | null)?.spawnError;
  const real = later ? await Promise.race([later, new Promise<undefined>((r) => setTimeout(() => r(undefined), 100).unref())]) : undefined;
  if (real) {
    const e = real as NodeJS.ErrnoException;
    return `fork failed: ${e.message.split('\n')[0]}${e.path && !e.message.includes(e.path) ? ` (${e.path})` : ''}`;
  }
  return errorMessage(err);
}

/**
 * The exit, once the channel is read: acks the worker wrote just before it died are
 * still in the socket at the exit (else the journal sends those updates again), but the
 * channel's end is awaited at most CHANNEL_DRAIN_MS (a grandchild may hold it open).
 */
function exitAfterChannel(exited: Promise<ExitInfo>, fromWorker: Readable): Promise<ExitInfo> {
  const channelEnded = new Promise<void>((resolve) => {
    fromWorker.once('end', resolve);
    fromWorker.once('close', resolve);
  });
  return exited.then((info) => new Promise<ExitInfo>((resolve) => {
    const timer = setTimeout(() => resolve(info), CHANNEL_DRAIN_MS);
    void channelEnded.then(() => {
      clearTimeout(timer);
      resolve(info);
    });
  }));
}

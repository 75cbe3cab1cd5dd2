/**
 * Forking and ending one worker process. Each worker is forked detached, so it
 * leads its own process group: a stop can SIGKILL the whole group (grandchildren
 * a handler spawned die too). The worker's stdout/stderr are piped to the master,
 * which owns the log files. The environment passed down is stripped of botfleet's
 * secrets; the token travels only in the IPC `init` message.
 */
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ErrorCodes, fail } from '../common/errors.js';
import type { MasterMessage } from '../worker/protocol.js';
import { forEachLine } from './log-file.js';

/**
 * Worker entry: the compiled worker bundled into one file by `npm run build`
 * (esbuild; packages such as node-telegram-bot-api and pino stay external, so a
 * handler importing the library shares the worker's copy). Workers always run
 * compiled JS (tsx costs ~3x start time, DESIGN.md); one file instead of our ~13
 * modules saves ~5 ms of a ~90 ms start (ESM loading is ~0.4 ms per module, measured).
 */
export const WORKER_ENTRY = fileURLToPath(new URL('../worker/bundle.js', import.meta.url));

/**
 * The Linux scheduling policy workers run under (sched(7); systemd's
 * `CPUSchedulingPolicy=`). `batch` is SCHED_BATCH: the same CPU share as
 * SCHED_OTHER at the same nice value, but a worker woken by an IPC message does
 * not preempt the running master. Under webhook load every update is such a
 * wake-up; without it the master is switched out on each IPC write (measured:
 * webhook throughput +10-22% with `batch`, median per run on 2 cores, same p99;
 * README, Performance).
 */
export type WorkerSchedPolicy = 'batch' | 'other';

/** util-linux `chrt`, which sets the policy and then execs node (same pid, same fds). */
const CHRT = 'chrt';
let batchUsable: boolean | undefined;

/**
 * Whether workers can be started under SCHED_BATCH here: `chrt --batch 0 true`
 * runs (Linux with util-linux). Probed once (~2 ms, synchronous) and remembered.
 */
export function batchSchedulingAvailable(): boolean {
  if (batchUsable === undefined) {
    try {
      execFileSync(CHRT, ['--batch', '0', 'true'], { stdio: 'ignore', timeout: 5000 });
      batchUsable = true;
    } catch {
      batchUsable = false;
    }
  }
  return batchUsable;
}

/** Variables never passed to a worker. */
const SECRET_ENV = ['BOTFLEET_ENCRYPTION_KEY', 'WEBHOOK_SECRET'];

/** How a worker ended. */
export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A forked worker. */
export interface WorkerProcess {
  readonly pid: number;
  /** Send an IPC message. @throws BotfleetError `BF_ERR_IPC_CHANNEL_CLOSED` when the channel is gone. */
  send(m: MasterMessage): void;
  /** SIGKILL (or `signal`) the worker's whole process group; no-op when already gone. */
  kill(signal?: NodeJS.Signals): void;
  /** Resolves once the process has exited (a grandchild holding the pipes open does not delay it). */
  readonly exited: Promise<ExitInfo>;
  readonly raw: ChildProcess;
}

/** Options for {@link forkWorker}. */
export interface ForkOptions {
  /** V8 old-space ceiling (MB) so a runaway heap dies fast instead of eating the machine. */
  maxOldSpaceMb: number;
  logLevel: string;
  /** Each output line of the worker (stdout JSON or stderr text). */
  onOutput(line: string, stream: 'stdout' | 'stderr'): void;
  onMessage(m: unknown): void;
  entry?: string;
  /** Default `other`; `batch` falls back to `other` where {@link batchSchedulingAvailable} is false. */
  schedPolicy?: WorkerSchedPolicy;
}

/** Fork a worker. @throws when the fork itself fails (no pid). */
export function forkWorker(o: ForkOptions): WorkerProcess {
  const env: NodeJS.ProcessEnv = { ...process.env, LOG_LEVEL: o.logLevel, BOTFLEET_WORKER: '1' };
  for (const k of SECRET_ENV) delete env[k];
  const nodeArgs = [`--max-old-space-size=${o.maxOldSpaceMb}`];
  // Under `batch`, fork runs `chrt --batch 0 node <args> <entry>`: chrt sets the policy and execs node.
  const viaChrt = o.schedPolicy === 'batch' && batchSchedulingAvailable();
  const child = fork(o.entry ?? WORKER_ENTRY, [], {
    detached: true,
    env,
    ...(viaChrt ? { execPath: CHRT, execArgv: ['--batch', '0', process.execPath, ...nodeArgs] } : { execArgv: nodeArgs }),
    serialization: 'json',
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  const pid = child.pid;
  if (pid === undefined) throw fail(ErrorCodes.IPC_CHILD_EXITED, 'fork failed: the worker process did not start');
  forEachLine(child.stdout!, (l) => o.onOutput(l, 'stdout'));
  forEachLine(child.stderr!, (l) => o.onOutput(l, 'stderr'));
  child.on('message', o.onMessage);
  child.on('error', () => undefined); // send/kill errors are handled where they happen; exit follows
  const exited = new Promise<ExitInfo>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  return {
    pid,
    raw: child,
    exited,
    send(m) {
      if (!child.connected) throw fail(ErrorCodes.IPC_CHANNEL_CLOSED, `IPC channel to worker ${pid} is closed`);
      child.send(m, (err) => {
        if (err) child.emit('send-error', err);
      });
    },
    kill(signal = 'SIGKILL') {
      if (child.exitCode !== null || child.signalCode !== null) return;
      try {
        process.kill(-pid, signal);
      } catch {
        try {
          child.kill(signal);
        } catch {
          // already gone
        }
      }
    },
  };
}

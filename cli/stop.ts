/**
 * `botfleet stop`: SIGTERM the master of this home, show the drain while it runs, and
 * say what had to be killed. Only the pid the kernel names as holder of
 * `run/master.lock` is signalled (/proc/locks), never a pid read from a file alone.
 */
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCodes, fail } from '../common/errors.js';
import { homePaths, type Config } from '../config/load.js';
import { lockHeld, lockHolder } from '../master/host/lock.js';
import { processAlive } from '../master/host/pid-file.js';
import { controlRequest } from '../master/surfaces/control-server.js';
import type { FleetStatus } from '../master/surfaces/status-server.js';

/** How a stop went. `killed`: bots SIGKILLed at the drain deadline, from the master's stop line (null when it cannot be read). */
export interface StopOutcome {
  running: boolean;
  /** The home that was looked at. */
  home?: string;
  workers: number;
  killed: string[] | null;
}

/** How often the drain is looked at (ms); each look is one status request on the control socket. */
const PROGRESS_EVERY_MS = 1000;
/** Bot ids named in one progress line; the rest are counted. */
const NAMED = 5;

/** Bots with a live worker, from the master's status (null when it does not answer). */
async function liveWorkers(socket: string): Promise<string[] | null> {
  try {
    const s = (await controlRequest(socket, { cmd: 'status' }, PROGRESS_EVERY_MS)) as FleetStatus;
    return s.workers.filter((w) => w.pid !== null).map((w) => w.botId);
  } catch {
    return null;
  }
}

/** The `killed` field of master `pid`'s last "master stopped" line in `logs/master.log` (its last 256 KiB), or null. */
export function killedFromStopLine(logFile: string, pid: number): string[] | null {
  let text: string;
  try {
    const fd = fs.openSync(logFile, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const len = Math.min(size, 256 * 1024);
      const buf = Buffer.alloc(len);
      fs.readSync(fd, buf, 0, len, size - len);
      text = buf.toString('utf8');
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return null;
  }
  for (const line of text.split('\n').reverse()) {
    if (!line.includes('"master stopped"')) continue;
    try {
      const o = JSON.parse(line) as { msg?: unknown; pid?: unknown; killed?: unknown };
      if (o.msg === 'master stopped' && o.pid === pid && Array.isArray(o.killed)) return o.killed.filter((k): k is string => typeof k === 'string');
    } catch {
      // a torn line: look further up
    }
  }
  return null;
}

const names = (ids: string[]) => (ids.length > NAMED ? `${ids.slice(0, NAMED).join(', ')} and ${ids.length - NAMED} more` : ids.join(', '));

/**
 * Stop the master and wait until its lock is free, calling `progress` with a line
 * whenever the number of workers still draining changes (at most once a second).
 * @throws BotfleetError `BF_ERR_CONTROL` when the holder's pid cannot be proven, `BF_ERR_IPC_TIMEOUT` past the drain deadline + 30 s
 */
export async function stopMaster(cfg: Config, progress: (line: string) => void = () => undefined): Promise<StopOutcome> {
  const p = homePaths(cfg.home);
  const lockFile = path.join(p.run, 'master.lock');
  if (!lockHeld(lockFile)) return { running: false, home: cfg.home, workers: 0, killed: null };
  const pid = lockHolder(lockFile);
  if (pid === null) throw fail(ErrorCodes.CONTROL, 'a master holds this home but its pid cannot be proven (/proc/locks unreadable); stop it with its service manager');
  const before = await liveWorkers(p.socket);
  process.kill(pid, 'SIGTERM');
  const workers = before?.length ?? 0;
  if (workers > 0) progress(`draining ${workers} worker(s) (deadline WORKER_TIMEOUT_MS = ${cfg.workerTimeoutMs} ms, then SIGKILL)`);
  let shown = workers;
  let asking = before !== null;
  let nextLook = Date.now() + PROGRESS_EVERY_MS;
  const deadline = Date.now() + cfg.workerTimeoutMs + 30_000;
  while (Date.now() < deadline) {
    if (!processAlive(pid) || lockHolder(lockFile) !== pid) return { running: true, workers, killed: killedFromStopLine(path.join(p.logs, 'master.log'), pid) };
    if (asking && Date.now() >= nextLook) {
      const left = await liveWorkers(p.socket);
      nextLook = Date.now() + PROGRESS_EVERY_MS;
      if (left === null) asking = false; // the control socket is closed: the workers are done, the master is closing
      else if (left.length !== shown) {
        shown = left.length;
        progress(left.length > 0 ? `draining: ${left.length} of ${workers} worker(s) left (${names(left)})` : `drained: ${workers} worker(s) stopped`);
      }
    }
    await sleep(100);
  }
  throw fail(ErrorCodes.IPC_TIMEOUT, `master ${pid} did not exit within ${cfg.workerTimeoutMs + 30_000} ms`);
}

/** The one-line answer of `botfleet stop`. */
export function stopSummary(o: StopOutcome): string {
  if (!o.running) return `botfleet is not running${o.home ? ` in ${o.home}` : ''}`;
  if (o.killed === null) return `botfleet stopped (${o.workers} worker(s); the master's stop line could not be read)`;
  if (o.killed.length === 0) return `botfleet stopped: ${o.workers} worker(s) drained`;
  return `botfleet stopped: ${o.workers - o.killed.length} worker(s) drained, ${o.killed.length} killed at the drain deadline (${names(o.killed)})`;
}

/**
 * Zombie cleanup. The master records every live worker in `run/workers.json`: pid,
 * bot, the process start time (/proc/<pid>/stat field 22, in clock ticks since
 * boot) and the worker entry path. A master that died without stopping its
 * children (SIGKILL, OOM) leaves that file behind; the next master ends every
 * recorded process that is still the same process (same pid, same start time,
 * command line running our worker entry) before it starts any worker, so no token
 * is ever long-polled twice (Telegram's 409 Conflict). Anything else is left alone:
 * a pid alone is never trusted, since pids are reused.
 */
import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { processAlive } from './pid-file.js';

/** One recorded worker. `startTime` is null where /proc is not available. */
export interface WorkerRecord {
  pid: number;
  botId: string;
  startTime: string | null;
}

/** The start time of `pid` in clock ticks since boot, or null when unknown. */
export function processStartTime(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name; starttime is field 22 overall, 20th after it.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

/** Writes the live workers to `file`; see {@link createWorkerRecorder}. */
export type WorkerRecorder = (live: Array<{ pid: number; botId: string }>) => void;

/**
 * A recorder for `file`. Each call writes the live workers atomically (temp file,
 * then rename). A worker's start time is read from /proc once, when it is first
 * seen: a fleet start records after every fork, and re-reading every pid each time
 * would be quadratic in the fleet size.
 */
export function createWorkerRecorder(file: string): WorkerRecorder {
  const startTimes = new Map<number, string | null>();
  return (live) => {
    const livePids = new Set(live.map((w) => w.pid));
    for (const pid of startTimes.keys()) if (!livePids.has(pid)) startTimes.delete(pid);
    const records: WorkerRecord[] = live.map((w) => {
      if (!startTimes.has(w.pid)) startTimes.set(w.pid, processStartTime(w.pid));
      return { ...w, startTime: startTimes.get(w.pid)! };
    });
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(records) + '\n', { mode: 0o600 });
    fs.renameSync(tmp, file);
  };
}

/** True when `r` still names the very process we recorded, running `workerEntry`. */
function isOurWorker(r: WorkerRecord, workerEntry: string): boolean {
  if (r.startTime === null || processStartTime(r.pid) !== r.startTime) return false;
  try {
    return fs.readFileSync(`/proc/${r.pid}/cmdline`, 'utf8').split('\0').includes(workerEntry);
  } catch {
    return false;
  }
}

/**
 * End the workers an earlier master left running: SIGKILL to each one's process
 * group, then wait (up to `deadlineMs`) until they are gone.
 * @returns the records that were ended (logged by the caller too)
 */
export async function endZombies(file: string, workerEntry: string, logger: Logger, deadlineMs = 5000): Promise<WorkerRecord[]> {
  let records: WorkerRecord[];
  try {
    records = JSON.parse(fs.readFileSync(file, 'utf8')) as WorkerRecord[];
  } catch {
    return [];
  }
  const ours = records.filter((r) => Number.isSafeInteger(r.pid) && r.pid > 1 && isOurWorker(r, workerEntry));
  for (const r of ours) {
    try {
      process.kill(-r.pid, 'SIGKILL');
    } catch {
      try {
        process.kill(r.pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
    logger.warn({ pid: r.pid, botId: r.botId }, 'ended a worker left by an earlier master');
  }
  const until = Date.now() + deadlineMs;
  while (ours.some((r) => processAlive(r.pid)) && Date.now() < until) await sleep(20);
  fs.rmSync(file, { force: true });
  return ours;
}

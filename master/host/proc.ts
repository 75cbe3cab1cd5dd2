/**
 * Processes as /proc shows them (Linux): each pid with its effective uid (the
 * owner of /proc/<pid>) and process group. Used to end every process of a bot's
 * uid when its worker exits (grandchildren, `setsid` ones included) and to count
 * a bot's whole process tree against its memory cap. Elsewhere (no /proc) the
 * lists are empty and only the process-group kill applies.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { digitsAt, KeptFile, keptBytes } from './kept-file.js';

/** One process. */
export interface ProcEntry {
  pid: number;
  uid: number;
  pgrp: number;
  /** proc(5)'s state letter: `Z` a zombie (already dead, waiting to be reaped), `X` dead. */
  state: string;
}

/** Every process visible now. Never throws (a process gone between readdir and stat is skipped). */
export function listProcesses(): ProcEntry[] {
  let names: string[];
  try {
    names = fs.readdirSync('/proc');
  } catch {
    return [];
  }
  const out: ProcEntry[] = [];
  for (const name of names) {
    const c = name.charCodeAt(0);
    if (c < 48 || c > 57) continue;
    const pid = Number(name);
    try {
      const uid = fs.statSync(`/proc/${name}`).uid;
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'latin1');
      // Fields after the parenthesised command: state ppid pgrp ...
      const [state = '', , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ', 3);
      out.push({ pid, uid, pgrp: Number(pgrp), state });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** The kernel's clock tick (USER_HZ, the unit of /proc times) and page size (bytes), asked once of getconf(1); 100 and 4096 when it cannot say. */
let units: { tickMs: number; pageBytes: number } | null = null;
function procUnits(): { tickMs: number; pageBytes: number } {
  if (units) return units;
  const ask = (name: string, dflt: number) => {
    try {
      const v = Number(execFileSync('getconf', [name], { encoding: 'utf8', timeout: 2000 }).trim());
      return Number.isFinite(v) && v > 0 ? v : dflt;
    } catch {
      return dflt;
    }
  };
  return (units = { tickMs: 1000 / ask('CLK_TCK', 100), pageBytes: ask('PAGESIZE', 4096) });
}

/** One process's use so far: CPU time (ms, user + system) and resident memory (bytes). */
export interface ProcUse { cpuMs: number; rssBytes: number }

/**
 * CPU time and RSS of processes from /proc/<pid>/stat (proc(5) fields 14, 15 and 24),
 * each read synchronously through a descriptor kept open per pid (host/kept-file.ts), as
 * pidusage keeps them: ~6 µs a process, against ~18 µs of CPU through pidusage's
 * asynchronous reads (both measured over 1000 processes). The memory monitor reads every
 * bot's tree every MEMORY_CHECK_INTERVAL_MS for the life of a fleet.
 */
export class ProcStatReader {
  private readonly files = new Map<number, KeptFile>();

  /** @returns null when the process is gone (or /proc is not there) */
  use(pid: number): ProcUse | null {
    let file = this.files.get(pid);
    if (!file) this.files.set(pid, (file = new KeptFile(`/proc/${pid}/stat`)));
    const n = file.readBytes();
    if (n < 0) {
      this.files.delete(pid);
      return null;
    }
    const u = procUnits();
    // Fields after the parenthesised command (its last ')'), from field 3 (state): utime is the 12th, stime the 13th, rss the 22nd.
    let ticks = 0;
    let pages = 0;
    let f = 0;
    let start = keptBytes.lastIndexOf(0x29, n - 1) + 2;
    for (let i = start; i <= n && f <= 21; i++) {
      if (i < n && keptBytes[i] !== 0x20) continue;
      if (f === 11 || f === 12) ticks += digitsAt(keptBytes, start, i);
      else if (f === 21) pages = digitsAt(keptBytes, start, i);
      f++;
      start = i + 1;
    }
    if (f <= 21 || Number.isNaN(ticks + pages)) return null; // not a stat line
    return { cpuMs: ticks * u.tickMs, rssBytes: pages * u.pageBytes };
  }

  /** Close the descriptors of every pid not in `keep`. */
  keepOnly(keep: ReadonlySet<number>): void {
    for (const [pid, file] of this.files) {
      if (keep.has(pid)) continue;
      file.close();
      this.files.delete(pid);
    }
  }
}

/**
 * The summed PSS of `pids` (bytes), from /proc/<pid>/smaps_rollup: a page shared by N
 * processes counts 1/N in each. ~0.6 ms a process, so read only when RSS says it matters.
 * @returns null when none could be read (another uid without ptrace access)
 */
export function pssBytes(pids: number[]): number | null {
  let total = 0;
  let read = 0;
  for (const pid of pids) {
    try {
      const m = /^Pss:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'latin1'));
      if (m) {
        total += Number(m[1]) * 1024;
        read++;
      }
    } catch {
      // gone, or not ours to read
    }
  }
  return read === 0 ? null : total;
}

/**
 * Delete what `uid` left in /dev/shm (POSIX shared memory and semaphores: files there
 * outlive their processes and keep their memory). Never for uid 0 or our own uid.
 * @returns how many entries were removed
 */
export function removeShmOf(uid: number, dir = '/dev/shm'): number {
  if (uid === 0 || uid === process.getuid?.()) return 0;
  let n = 0;
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return 0;
  }
  for (const name of names) {
    const p = `${dir}/${name}`;
    try {
      if (fs.lstatSync(p).uid !== uid) continue;
      fs.rmSync(p, { recursive: true, force: true });
      n++;
    } catch {
      // gone meanwhile
    }
  }
  return n;
}

/**
 * SIGKILL every process whose effective uid is `uid`, in rounds until none is left
 * (a process forking meanwhile is caught by the next round), at most `rounds`.
 * @returns how many processes were signalled. Never called for uid 0 or our own uid.
 */
export function killUid(uid: number, rounds = 5): number {
  if (uid === 0 || uid === process.getuid?.()) return 0;
  let killed = 0;
  for (let r = 0; r < rounds; r++) {
    // A zombie is already dead: it cannot be killed and is not counted (its parent or init reaps it).
    const left = listProcesses().filter((p) => p.uid === uid && p.state !== 'Z' && p.state !== 'X');
    if (left.length === 0) break;
    for (const p of left) {
      try {
        process.kill(p.pid, 'SIGKILL');
        killed++;
      } catch {
        // gone meanwhile
      }
    }
  }
  return killed;
}

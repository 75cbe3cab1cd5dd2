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

/** A process that can still be killed: neither a zombie nor dead (proc(5) state `Z`, `X`). */
const killable = (state: string) => state !== 'Z' && state !== 'X';

/** The state letter of `pid` (/proc/<pid>/stat), or null when it is gone. */
function stateOf(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.charAt(stat.lastIndexOf(')') + 2);
  } catch {
    return null;
  }
}

/**
 * SIGKILL what `list` names, in rounds until it names nothing (a process forking meanwhile
 * is caught by the next round), at most `rounds`. `list` leaves out zombies: already dead,
 * they cannot be killed and are not counted (their parent or init reaps them).
 * @returns how many processes were signalled (each once)
 */
function killInRounds(list: () => number[], rounds: number): number {
  const killed = new Set<number>(); // a process still dying at the next round is signalled again, counted once
  for (let r = 0; r < rounds; r++) {
    const left = list();
    if (left.length === 0) break;
    for (const pid of left) {
      try {
        process.kill(pid, 'SIGKILL');
        killed.add(pid);
      } catch {
        // gone meanwhile
      }
    }
  }
  return killed.size;
}

/**
 * SIGKILL every process whose effective uid is in `uids`, in rounds (one /proc listing each:
 * O(every process on the machine), 2.6–10 ms at 67 processes here). uid 0 and our own uid
 * are never touched. @returns how many processes were signalled
 */
export function killUids(uids: ReadonlySet<number>, rounds = 5): number {
  const own = process.getuid?.();
  const mine = (uid: number) => uids.has(uid) && uid !== 0 && uid !== own;
  return killInRounds(() => listProcesses().filter((p) => mine(p.uid) && killable(p.state)).map((p) => p.pid), rounds);
}

/** {@link killUids} for one uid. */
export const killUid = (uid: number, rounds = 5): number => killUids(new Set([uid]), rounds);

/**
 * SIGKILL every process `members` lists (a cgroup's cgroup.procs: a bot's whole tree,
 * `setsid` ones included), in rounds; reads only their own /proc entries, O(the bot's
 * processes) where a /proc listing is O(the machine's). Never our own pid or init.
 * @returns how many processes were signalled, or null when `members` gives null (no group: nothing read twice)
 */
export function killMembers(members: () => readonly number[] | null, rounds = 5): number | null {
  let listed = members();
  if (listed === null) return null;
  const live = (pid: number) => pid > 1 && pid !== process.pid && killable(stateOf(pid) ?? 'X');
  return killInRounds(() => {
    const now = listed ?? members() ?? [];
    listed = null; // the first round uses the list already read
    return now.filter(live);
  }, rounds);
}

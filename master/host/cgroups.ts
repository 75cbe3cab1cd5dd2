/**
 * Per-bot control groups: the kernel enforces each bot's memory cap and process count, as
 * systemd and Kubernetes do for a service or a pod. A bot's worker and everything it
 * spawns live in `<base>/<botId>`; its memory limit is MAX_MEMORY_PER_WORKER_MB (shared
 * memory, /dev/shm included, is charged to it; swap may not extend it), its `pids.max`
 * MAX_PROCESSES_PER_BOT (threads count). Over the limit the kernel's OOM killer acts at
 * once, and the group's `oom_kill` counter tells the master why the worker died.
 *
 * Two layouts (cgroups(7)):
 * - v1: the `memory` and `pids` hierarchies, each under this master's own group
 *   (/proc/self/cgroup), where it may create directories (root).
 * - v2 with delegation (systemd `Delegate=yes`): the master moves itself into a leaf
 *   `<own>/<name>-master` (the "no internal processes" rule), enables `memory` and `pids`
 *   for its subtree, and puts bots in `<own>/<name>/<botId>`.
 * Where neither can be had (not root, no delegation), nothing is created and the master
 * falls back to sampling (lifecycle/monitors.ts) and RLIMIT_NPROC; `note` says why.
 * The filesystem root is a parameter so the layout logic can be tested on a directory.
 */
import fs from 'node:fs';
import path from 'node:path';
import { KeptFile, keptField, statKey } from './kept-file.js';

/** The limits of one bot's group. */
export interface CgroupLimits {
  /** memory limit, bytes */
  memoryBytes: number;
  /** most tasks (processes and threads) at once */
  pids: number;
}

/** One bot's group. Every method is best effort: a failure reads as "unknown", never throws. */
export interface BotGroup {
  /** The `cgroup.procs` files a process writes its pid into to join (the worker does, before it execs node: host/privileges.ts). */
  procsFiles(): string[];
  /** Anonymous plus shared memory charged to the group (bytes): what the cap is about, page cache left out. null when unreadable. */
  memoryBytes(): number | null;
  /** The group's processes (its cgroup.procs), or null when unreadable. */
  pids(): number[] | null;
  /** Times the kernel's OOM killer acted in the group (cumulative). */
  oomKills(): number;
  /** Remove the group (once its processes are gone). */
  remove(): void;
}

/** Per-bot groups of one master. */
export interface BotCgroups {
  readonly kind: 'v1' | 'v2' | null;
  /** Why there are none, when there are none. */
  readonly note: string | null;
  /** The bot's group with `limits` set (created or updated). @returns null when it cannot be made */
  forBot(botId: string, limits: CgroupLimits): BotGroup | null;
  /** Remove every bot group this master made that is empty now. */
  removeAll(): void;
}

/** Where the cgroup filesystems are and who we are in them: the real ones by default. */
export interface CgroupEnv {
  root: string;
  /** The text of /proc/self/cgroup. */
  selfCgroup: string;
  pid: number;
}

const read = (f: string): string | null => {
  try {
    return fs.readFileSync(f, 'utf8');
  } catch {
    return null;
  }
};
const write = (f: string, v: string): boolean => {
  try {
    fs.writeFileSync(f, v);
    return true;
  } catch {
    return false;
  }
};
/** The pattern of each key's line, made once (memory.stat is read for every bot on every sample). */
const fieldPatterns = new Map<string, RegExp>();
/** A `key value` line's number from a stat-like file, 0 when absent. */
const field = (text: string | null, key: string): number => {
  let re = fieldPatterns.get(key);
  if (!re) fieldPatterns.set(key, (re = new RegExp(`^${key} (\\d+)$`, 'm')));
  const m = text === null ? null : re.exec(text);
  return m ? Number(m[1]) : 0;
};

/** This process's path in hierarchy `controller` (v1: `N:memory:/path`), or in the unified one (`0::/path`) for ''. */
export function ownPath(selfCgroup: string, controller: string): string | null {
  for (const line of selfCgroup.split('\n')) {
    const [, list, p] = line.split(':');
    if (p === undefined) continue;
    if (controller === '' ? list === '' : list!.split(',').includes(controller)) return p;
  }
  return null;
}

/**
 * Open the per-bot groups of a master named `name` (unique per home on the machine).
 * Tries v2 with delegation, then v1; creates only directories of its own.
 */
export function openCgroups(name: string, env: CgroupEnv = { root: '/sys/fs/cgroup', selfCgroup: read('/proc/self/cgroup') ?? '', pid: process.pid }): BotCgroups {
  const v2 = openV2(name, env);
  if (v2) return v2;
  const v1 = openV1(name, env);
  if (typeof v1 !== 'string') return v1;
  return { kind: null, note: v1, forBot: () => null, removeAll: () => undefined };
}

/** v1: the memory and pids hierarchies. @returns the groups, or why not */
function openV1(name: string, env: CgroupEnv): BotCgroups | string {
  const memOwn = ownPath(env.selfCgroup, 'memory');
  const pidsOwn = ownPath(env.selfCgroup, 'pids');
  if (memOwn === null || pidsOwn === null) return 'no cgroup v1 memory and pids hierarchies for this process';
  const memBase = path.join(env.root, 'memory', memOwn, name);
  const pidsBase = path.join(env.root, 'pids', pidsOwn, name);
  for (const base of [memBase, pidsBase]) {
    try {
      fs.mkdirSync(base, { recursive: true });
    } catch (err) {
      return `cgroup v1: cannot create ${base} (${(err as NodeJS.ErrnoException).code ?? 'error'}): the master is not root or the hierarchy is read-only`;
    }
  }
  if (read(path.join(memBase, 'memory.limit_in_bytes')) === null) return `cgroup v1: ${memBase} has no memory.limit_in_bytes`;
  // Groups an earlier master of this home left (a crash): empty now that its processes are ended.
  for (const base of [memBase, pidsBase]) removeEmptyChildren(base);
  const made = new Set<string>();
  return {
    kind: 'v1', note: null,
    forBot(botId, limits) {
      const mem = path.join(memBase, botId);
      const pids = path.join(pidsBase, botId);
      if (!makeDirs([mem, pids])) return null;
      made.add(botId);
      const ok = setV1Memory(mem, limits.memoryBytes);
      if (!ok || !write(path.join(pids, 'pids.max'), String(limits.pids))) return null;
      return botGroup([mem, pids], { stat: path.join(mem, 'memory.stat'), anon: 'total_rss', shmem: 'total_shmem', oom: path.join(mem, 'memory.oom_control') }, () => made.delete(botId));
    },
    removeAll() {
      for (const id of made) for (const dir of [path.join(memBase, id), path.join(pidsBase, id)]) rmdirQuiet(dir);
      rmdirQuiet(memBase);
      rmdirQuiet(pidsBase);
    },
  };
}

/** Make each directory (with its parents). @returns false when one cannot be made */
function makeDirs(dirs: readonly string[]): boolean {
  try {
    for (const d of dirs) fs.mkdirSync(d, { recursive: true });
    return true;
  } catch {
    return false;
  }
}

/** v2 with delegation. @returns null when v2 is not there or not delegated to us */
function openV2(name: string, env: CgroupEnv): BotCgroups | null {
  const own = ownPath(env.selfCgroup, '');
  if (own === null || read(path.join(env.root, 'cgroup.controllers')) === null) return null;
  const ownDir = path.join(env.root, own);
  const available = (read(path.join(ownDir, 'cgroup.controllers')) ?? '').split(/\s+/);
  if (!available.includes('memory') || !available.includes('pids')) return null;
  const leaf = path.join(ownDir, `${name}-master`);
  const base = path.join(ownDir, name);
  if (!makeDirs([leaf, base])) return null;
  // No internal processes: the master leaves its group for a leaf before the group may have controlled children.
  if (!write(path.join(leaf, 'cgroup.procs'), String(env.pid))) return null;
  if (!write(path.join(ownDir, 'cgroup.subtree_control'), '+memory +pids') || !write(path.join(base, 'cgroup.subtree_control'), '+memory +pids')) return null;
  removeEmptyChildren(base);
  const made = new Set<string>();
  return {
    kind: 'v2', note: null,
    forBot(botId, limits) {
      const dir = path.join(base, botId);
      try {
        fs.mkdirSync(dir, { recursive: true });
      } catch {
        return null;
      }
      made.add(botId);
      write(path.join(dir, 'memory.swap.max'), '0');
      if (!write(path.join(dir, 'memory.max'), String(limits.memoryBytes)) || !write(path.join(dir, 'pids.max'), String(limits.pids))) return null;
      return botGroup([dir], { stat: path.join(dir, 'memory.stat'), anon: 'anon', shmem: 'shmem', oom: path.join(dir, 'memory.events') }, () => made.delete(botId));
    },
    removeAll() {
      for (const id of made) rmdirQuiet(path.join(base, id));
    },
  };
}

/**
 * One bot's group over its directories (v1: memory and pids; v2: one): where its processes
 * join, which `memory.stat` fields are its anonymous and shared memory, where the kernel
 * counts its OOM kills (`oom_kill`).
 */
function botGroup(dirs: string[], memory: { stat: string; anon: string; shmem: string; oom: string }, forget: () => void): BotGroup {
  // Read on every sample of the bot: through kept descriptors (host/kept-file.ts).
  const stat = new KeptFile(memory.stat);
  const anon = statKey(memory.anon);
  const shmem = statKey(memory.shmem);
  const procs = new KeptFile(path.join(dirs[0]!, 'cgroup.procs'));
  return {
    procsFiles: () => dirs.map((d) => path.join(d, 'cgroup.procs')),
    memoryBytes() {
      const n = stat.readBytes();
      return n < 0 ? null : keptField(n, anon) + keptField(n, shmem);
    },
    pids() {
      const text = procs.read();
      return text === null ? null : text.split('\n').filter((l) => l !== '').map(Number);
    },
    oomKills: () => field(read(memory.oom), 'oom_kill'),
    remove() {
      stat.close();
      procs.close();
      for (const d of dirs) rmdirQuiet(d);
      forget();
    },
  };
}

/**
 * v1 memory limit, with swap held to it where the kernel accounts swap (memsw): memsw
 * must stay at or above the limit, so it is raised first when the limit grows, lowered
 * after when it shrinks.
 */
function setV1Memory(dir: string, bytes: number): boolean {
  const limit = path.join(dir, 'memory.limit_in_bytes');
  const memsw = path.join(dir, 'memory.memsw.limit_in_bytes');
  const v = String(bytes);
  if (read(memsw) === null) return write(limit, v);
  return write(limit, v) ? write(memsw, v) : write(memsw, v) && write(limit, v);
}

/**
 * Remove the groups a master of this machine made under `name` (v1 memory and pids, or
 * the unified hierarchy), where no process is left: for tests and tools that clean up
 * after a master that was killed. Best effort, never throws.
 */
export function removeGroupsNamed(name: string, env: CgroupEnv = { root: '/sys/fs/cgroup', selfCgroup: read('/proc/self/cgroup') ?? '', pid: process.pid }): void {
  const bases = [['memory', ownPath(env.selfCgroup, 'memory')], ['pids', ownPath(env.selfCgroup, 'pids')], ['', ownPath(env.selfCgroup, '')]] as const;
  for (const [hierarchy, own] of bases) {
    if (own === null) continue;
    const base = path.join(env.root, hierarchy, own, name);
    removeEmptyChildren(base);
    rmdirQuiet(base);
    rmdirQuiet(`${base}-master`);
  }
}

/** Remove every child group of `dir` that has no process left (a busy one stays). */
export function removeEmptyChildren(dir: string): void {
  let names: fs.Dirent[];
  try {
    names = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const e of names) if (e.isDirectory()) rmdirQuiet(path.join(dir, e.name));
}

/** rmdir, ignoring a group that still has processes (EBUSY) or is gone. */
function rmdirQuiet(dir: string): void {
  try {
    fs.rmdirSync(dir);
  } catch {
    // busy or gone
  }
}

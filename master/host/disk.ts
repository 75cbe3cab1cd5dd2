/**
 * The size of a bot's own directory, as the disk counts it: the blocks of every file and
 * directory under it (lstat, so a symlink is its own size, never its target's; sparse files
 * count what they use). Walked in steps that give the event loop back, and stopped as soon
 * as the total passes `stopAbove`: a bot writing 2 GB costs the walk no more than the cap.
 * DirSizes walks a bot's directory again only once inotify saw a change there (or every
 * FORCED_WALK_MS).
 */
import fs, { type Dirent, type FSWatcher } from 'node:fs';
import path from 'node:path';

/** Most entries looked at in one walk: past it, the directory counts as over any cap (a million tiny files is a fault too). */
export const MAX_WALK_ENTRIES = 200_000;

/** Entries looked at between two yields to the event loop: a big directory never stalls the master for long (~3 µs an entry). */
const STEP_ENTRIES = 256;

/**
 * Bytes used under `dir`, or the first total past `stopAbove`. Synchronous calls in steps
 * of {@link STEP_ENTRIES}, the loop given back between steps: measured over 300 bot
 * directories of 0 to 3 files, ~30 µs of CPU a directory this way against ~200 µs with
 * fs.promises (a trip through libuv's thread pool per call), and every bot's directory is
 * walked every DATA_CHECK_INTERVAL_MS.
 * @param dirs when given, receives every directory walked (`dir` first)
 * @returns null when `dir` cannot be read at all (gone, or not ours); entries that vanish meanwhile are skipped
 */
export async function dirUsage(dir: string, stopAbove: number, dirs?: string[]): Promise<number | null> {
  const top = fs.lstatSync(dir, { throwIfNoEntry: false });
  if (!top) return null;
  dirs?.push(dir);
  let total = top.blocks * 512;
  let seen = 0;
  const stack = [dir];
  while (stack.length > 0) {
    const d = stack.pop()!;
    let entries: Dirent[];
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      continue;
    }
    for (const e of entries) {
      if (++seen > MAX_WALK_ENTRIES) return Number.POSITIVE_INFINITY;
      if (seen % STEP_ENTRIES === 0) await new Promise((r) => setImmediate(r));
      const p = path.join(d, e.name);
      const st = fs.lstatSync(p, { throwIfNoEntry: false });
      if (!st) continue;
      total += st.blocks * 512;
      if (total > stopAbove) return total;
      if (e.isDirectory()) {
        stack.push(p);
        dirs?.push(p);
      }
    }
  }
  return total;
}

/** Longest a directory's size is trusted without a walk (ms): the bound on what inotify does not see (a write through a shared mapping, a write in the instant between a walk and its watch). */
export const FORCED_WALK_MS = 30_000;
/** Most directories watched per bot: a deeper tree is walked every time instead. */
export const MAX_WATCHED_DIRS = 32;

interface Known { bytes: number; at: number; dirs: string[]; watchers: FSWatcher[] | null }

/**
 * Bot directories' sizes, walked again only when one may have changed. After a walk, each
 * of its directories is watched (inotify, through fs.watch); the first event marks the bot
 * changed and closes its watches, so a bot writing without pause costs the master one event
 * per check, and its next check walks. An idle bot costs no walk at all but one every
 * {@link FORCED_WALK_MS}: at 1000 idle bots the master walked 500 directories a second
 * (a check every DATA_CHECK_INTERVAL_MS 2000), ~30 µs each, the most of its idle CPU.
 * A forced walk keeps the watches (a change during it is seen), made anew only when the
 * walk found other directories: at 1000 idle bots each forced walk had cost 7 system calls,
 * two of them removing and adding the same inotify watch (strace, 35 walks a second).
 * A watch that cannot be made (ENOSPC past `fs.inotify.max_user_watches`, a tree over
 * {@link MAX_WATCHED_DIRS}) leaves that bot walked at every check, as before.
 */
export class DirSizes {
  private readonly known = new Map<string, Known>();
  /** Walks made so far (the cost this class saves, for tests). */
  walks = 0;
  /** inotify watch sets made so far (for tests). */
  watchSets = 0;

  constructor(private readonly now: () => number = Date.now) {}

  /**
   * The size of `key`'s directory `dir` (see {@link dirUsage}): from its last walk, at once
   * (no promise: at 1000 idle bots these checks are 500 a second), while nothing changed
   * there; else a walk's promise. `dir` may be a function: its path is made only for a walk.
   */
  measure(key: string, dir: string | (() => string), stopAbove: number): number | null | Promise<number | null> {
    const k = this.known.get(key);
    if (k?.watchers && this.now() - k.at < FORCED_WALK_MS && k.bytes <= stopAbove) return k.bytes;
    return this.walk(key, typeof dir === 'string' ? dir : dir(), stopAbove, k?.watchers ? k : null);
  }

  /** Walk `dir`; `kept`: the bot's live watches, kept through the walk and after it when it found the same directories. */
  private async walk(key: string, dir: string, stopAbove: number, kept: Known | null): Promise<number | null> {
    if (!kept) this.forget(key);
    const dirs: string[] = [];
    const at = this.now();
    this.walks++;
    const bytes = await dirUsage(dir, stopAbove, dirs);
    if (bytes === null || bytes > stopAbove) {
      this.forget(key);
      return bytes;
    }
    if (kept?.watchers && this.known.get(key) === kept && sameList(kept.dirs, dirs)) {
      kept.bytes = bytes;
      kept.at = at;
      return bytes;
    }
    this.forget(key);
    const known: Known = { bytes, at, dirs, watchers: null };
    this.watchSets++;
    known.watchers = watchAll(dirs, () => closeWatchers(known));
    this.known.set(key, known);
    return bytes;
  }

  /** Drop `key`'s watches (its bot removed). */
  forget(key: string): void {
    const k = this.known.get(key);
    if (k) closeWatchers(k);
    this.known.delete(key);
  }

  /** Drop every watch (the master stops). */
  close(): void {
    for (const key of [...this.known.keys()]) this.forget(key);
  }
}

const sameList = (a: string[], b: string[]): boolean => a.length === b.length && a.every((x, i) => x === b[i]);

function closeWatchers(k: Known): void {
  for (const w of k.watchers ?? []) w.close();
  k.watchers = null;
}

/** A watch on each of `dirs`, `onChange` at the first event of any; null when any cannot be made. */
function watchAll(dirs: string[], onChange: () => void): FSWatcher[] | null {
  if (dirs.length > MAX_WATCHED_DIRS) return null;
  const made: FSWatcher[] = [];
  try {
    for (const d of dirs) {
      const w = fs.watch(d, { persistent: false }, onChange);
      w.on('error', onChange);
      made.push(w);
    }
    return made;
  } catch {
    for (const w of made) w.close();
    return null;
  }
}

/**
 * The size of a bot's own directory, as the disk counts it: the blocks of every file and
 * directory under it (lstat, so a symlink is its own size, never its target's; sparse files
 * count what they use). Walked in steps that give the event loop back, and stopped as soon
 * as the total passes `stopAbove`: a bot writing 2 GB costs the walk no more than the cap.
 */
import fs, { type Dirent } from 'node:fs';
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
 * @returns null when `dir` cannot be read at all (gone, or not ours); entries that vanish meanwhile are skipped
 */
export async function dirUsage(dir: string, stopAbove: number): Promise<number | null> {
  const top = fs.lstatSync(dir, { throwIfNoEntry: false });
  if (!top) return null;
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
      if (e.isDirectory()) stack.push(p);
    }
  }
  return total;
}

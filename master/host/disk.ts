/**
 * The size of a bot's own directory, as the disk counts it: the blocks of every file and
 * directory under it (lstat, so a symlink is its own size, never its target's; sparse files
 * count what they use). Walked asynchronously, a directory at a time, and stopped as soon
 * as the total passes `stopAbove`: a bot writing 2 GB costs the walk no more than the cap.
 */
import fs from 'node:fs/promises';
import path from 'node:path';

/** Most entries looked at in one walk: past it, the directory counts as over any cap (a million tiny files is a fault too). */
export const MAX_WALK_ENTRIES = 200_000;

/**
 * Bytes used under `dir`, or the first total past `stopAbove`. @returns null when `dir`
 * cannot be read at all (gone, or not ours); entries that vanish meanwhile are skipped
 */
export async function dirUsage(dir: string, stopAbove: number): Promise<number | null> {
  let total = 0;
  let seen = 0;
  const stack = [dir];
  try {
    total += (await fs.lstat(dir)).blocks * 512;
  } catch {
    return null;
  }
  while (stack.length > 0) {
    const d = stack.pop()!;
    let entries: import('node:fs').Dirent[];
    try {
      entries = await fs.readdir(d, { withFileTypes: true });
    } catch {
      continue;
    }
    for (const e of entries) {
      if (++seen > MAX_WALK_ENTRIES) return Number.POSITIVE_INFINITY;
      const p = path.join(d, e.name);
      try {
        total += (await fs.lstat(p)).blocks * 512;
      } catch {
        continue;
      }
      if (total > stopAbove) return total;
      if (e.isDirectory()) stack.push(p);
    }
  }
  return total;
}

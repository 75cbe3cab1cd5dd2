/**
 * The machine-wide locks of per-bot uid ranges, one per WORKER_UID_BASE: two masters on
 * one range would kill each other's workers (every process of a bot uid dies at its
 * exit), so a master holds its range's lock for its whole life (host/lock.ts).
 */
import fs from 'node:fs';
import path from 'node:path';
import { BotfleetError, ErrorCodes, errorMessage, fail } from '../../common/errors.js';
import { acquireLock, lockHolder, type MasterLock } from './lock.js';

/** Machine-wide locks of uid ranges, one per WORKER_UID_BASE (in /run: gone at reboot); see {@link uidLockDir}. */
export const UID_LOCK_DIR = '/run/botfleet';

/**
 * The directory of the uid-range locks: systemd's `RUNTIME_DIRECTORY` for a unit that has
 * one, else {@link UID_LOCK_DIR}, shared by every user's masters on the machine: sticky
 * and world-writable like /tmp (each lock file is its creator's, 0600), so a root master
 * and a capability-holding one see each other's ranges.
 */
export function uidLockDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.RUNTIME_DIRECTORY?.split(':')[0] || UID_LOCK_DIR;
}

/**
 * Hold the lock of the range starting at `base` for this master's life.
 * @throws BotfleetError `BF_ERR_ISOLATION`: held by a live master (its pid), or the
 * directory or file cannot be opened (the path, the errno, the file's owner)
 */
export function lockUidRange(base: number): MasterLock {
  const dir = uidLockDir();
  const file = path.join(dir, `uid-base-${base}.lock`);
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o1777 });
    const st = fs.statSync(dir);
    if (st.uid === process.getuid?.() && dir === UID_LOCK_DIR && (st.mode & 0o7777) !== 0o1777) fs.chmodSync(dir, 0o1777);
  } catch (err) {
    throw fail(ErrorCodes.ISOLATION, `the uid-range lock directory ${dir} cannot be made (${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}): create it sticky and world-writable (mode 1777), or run under a unit with RuntimeDirectory=`, err);
  }
  try {
    return acquireLock(file);
  } catch (err) {
    if (err instanceof BotfleetError && err.code === ErrorCodes.ALREADY_RUNNING) {
      const holder = lockHolder(file);
      throw fail(ErrorCodes.ISOLATION, `WORKER_UID_BASE=${base} is held by another master${holder ? ` (pid ${holder})` : ''} (${file}): give each home its own base`, err);
    }
    let owner = '';
    try {
      owner = `, owned by uid ${fs.statSync(file).uid}`;
    } catch {
      // no file: the directory is the problem
    }
    const code = (err as { code?: string }).code ?? 'error';
    throw fail(ErrorCodes.ISOLATION, `the uid-range lock ${file} cannot be opened (${code}${owner}: ${errorMessage(err)}); a master of another user uses or used WORKER_UID_BASE=${base}: give this home its own base`, err);
  }
}

/**
 * Delete the lock file of the range at `base` once its master has exited for good (a test's,
 * a benchmark's or a demo's throwaway range). Masters keep theirs: deleting a lock file that
 * another master may be opening would let two hold the range (one on the old inode, one on
 * the new file). Never throws.
 */
export function removeUidLock(base: number | string, env: NodeJS.ProcessEnv = process.env): void {
  for (const suffix of ['', '-journal']) fs.rmSync(path.join(uidLockDir(env), `uid-base-${base}.lock${suffix}`), { force: true });
}

/**
 * One master per home: a lock held by the kernel for the master's whole life, in
 * `run/master.lock`, a SQLite database opened with `locking_mode=EXCLUSIVE` and
 * written once, so SQLite holds its POSIX (fcntl) write lock on the file until the
 * connection closes or the process dies (https://sqlite.org/pragma.html#pragma_locking_mode).
 * Why SQLite: better-sqlite3 is already our dependency and its locking is well
 * kept; Node has no flock(). A pid file alone proved nothing: deleted, a second
 * master started on the same home; stale and reused, `stop` signalled a stranger.
 *
 * The holder's pid is read from the kernel's own table, /proc/locks, by the lock
 * file's inode: `botfleet stop` signals only that pid.
 */
import fs from 'node:fs';
import Database from 'better-sqlite3';
import { ErrorCodes, fail } from '../../common/errors.js';

/** A held lock. */
export interface MasterLock {
  /** Let go (at the end of a graceful stop; death releases it too). */
  release(): void;
}

/**
 * Take the home's lock. @throws BotfleetError `BF_ERR_ALREADY_RUNNING` (naming the
 * holder's pid when the kernel says it) while another live process holds it.
 */
export function acquireLock(file: string): MasterLock {
  const db = new Database(file, { timeout: 0 });
  try {
    db.pragma('locking_mode = EXCLUSIVE');
    db.pragma('journal_mode = DELETE');
    db.exec('CREATE TABLE IF NOT EXISTS holder (pid INTEGER NOT NULL)');
    db.transaction(() => {
      db.exec('DELETE FROM holder');
      db.prepare('INSERT INTO holder (pid) VALUES (?)').run(process.pid);
    })();
  } catch (err) {
    db.close();
    if ((err as { code?: string }).code?.startsWith('SQLITE_BUSY') || (err as { code?: string }).code === 'SQLITE_LOCKED') {
      const holder = lockHolder(file);
      throw fail(ErrorCodes.ALREADY_RUNNING, `botfleet is already running in this home${holder ? ` (pid ${holder})` : ''}`, err);
    }
    throw err;
  }
  try {
    fs.chmodSync(file, 0o600);
  } catch {
    // not ours to change: the lock holds all the same
  }
  return { release: () => db.close() };
}

/**
 * The pid holding a POSIX lock on `file`, from /proc/locks (Linux), or null when
 * none does or the table cannot be read. Lines look like
 * `1: POSIX  ADVISORY  WRITE 4242 08:01:1234567 1073741824 1073741825`.
 */
export function lockHolder(file: string): number | null {
  let ino: number;
  let table: string;
  try {
    ino = fs.statSync(file).ino;
    table = fs.readFileSync('/proc/locks', 'utf8');
  } catch {
    return null;
  }
  for (const line of table.split('\n')) {
    const f = line.trim().split(/\s+/);
    // f: id: kind class mode pid dev:inode start end (a "->" marks a blocked waiter: skip)
    if (f[1] !== 'POSIX' || f.includes('->')) continue;
    const devIno = f[5]?.split(':');
    if (devIno && Number(devIno[2]) === ino) {
      const pid = Number(f[4]);
      if (Number.isSafeInteger(pid) && pid > 0) return pid;
    }
  }
  return null;
}

/** True when some live process holds the lock on `file` (a free lock is taken and given back at once). */
export function lockHeld(file: string): boolean {
  if (!fs.existsSync(file)) return false;
  try {
    acquireLock(file).release();
    return false;
  } catch (err) {
    return (err as { code?: string }).code === ErrorCodes.ALREADY_RUNNING;
  }
}

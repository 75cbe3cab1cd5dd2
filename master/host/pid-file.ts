/**
 * The pid file `<home>/run/botfleet.pid`: the master's pid as text. A pid file
 * whose process is gone, or is not a botfleet master (pid reused), is stale.
 */
import fs from 'node:fs';
import { ErrorCodes, fail } from '../../common/errors.js';

/** True when `pid` is a live process; a zombie (exited, not yet reaped) counts as gone. */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    return fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ').pop()?.[0] !== 'Z';
  } catch {
    return !fs.existsSync('/proc/self'); // no /proc (not Linux): trust kill(0); with /proc, no entry means gone
  }
}

/** The pid in the file if that process is alive and looks like botfleet; else null. */
export function readLivePid(file: string): number | null {
  let pid: number;
  try {
    pid = Number(fs.readFileSync(file, 'utf8').trim());
  } catch {
    return null;
  }
  if (!Number.isSafeInteger(pid) || pid <= 0 || !processAlive(pid)) return null;
  try {
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    if (!cmdline.includes('botfleet') && !cmdline.includes('cli/main.js')) return null;
  } catch {
    // no /proc (not Linux): trust the liveness check
  }
  return pid;
}

/** Write our pid. @throws `BF_ERR_ALREADY_RUNNING` when a live master owns the file. */
export function writePidFile(file: string): void {
  const other = readLivePid(file);
  if (other !== null && other !== process.pid) throw fail(ErrorCodes.ALREADY_RUNNING, `botfleet is already running in this home (pid ${other})`);
  fs.writeFileSync(file, `${process.pid}\n`, { mode: 0o644 });
}

/** Remove the file if it still holds our pid. */
export function removePidFile(file: string): void {
  try {
    if (Number(fs.readFileSync(file, 'utf8').trim()) === process.pid) fs.rmSync(file);
  } catch {
    // already gone
  }
}

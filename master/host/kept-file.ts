/**
 * A small kernel file read again and again through one descriptor kept open (a read at
 * offset 0 each time): /proc/<pid>/stat, a cgroup's memory.stat or cgroup.procs, read for
 * every bot on every sample. Measured per read: ~6 µs (/proc/<pid>/stat) and ~14 µs
 * (v1 memory.stat) this way, against ~27 µs and ~42 µs with readFileSync (open, fstat,
 * read, close). A kept /proc descriptor of a process that has exited reads as an error,
 * never as another process that took its pid.
 */
import fs from 'node:fs';

/** Largest text read (bytes): these files are a few hundred bytes to a few KB. */
const MAX_BYTES = 16 * 1024;
const shared = Buffer.alloc(MAX_BYTES);
/** The buffer {@link KeptFile.readBytes} reads into (one for every KeptFile: the master reads them one at a time). */
export const keptBytes: Buffer = shared;

/** The decimal number at `at` in `buf` (digits up to `end`); NaN when there is none. */
export function digitsAt(buf: Buffer, at: number, end: number): number {
  let v = 0;
  let i = at;
  for (; i < end; i++) {
    const c = buf[i]! - 48;
    if (c < 0 || c > 9) break;
    v = v * 10 + c;
  }
  return i === at ? Number.NaN : v;
}

/**
 * The number of the `key value` line of the last `n` bytes read into {@link keptBytes}
 * (a cgroup's memory.stat), 0 when there is none. `key` is made by {@link statKey}.
 */
export function keptField(n: number, key: Buffer): number {
  // The first line has no newline before it: the key without its own.
  const len = key.length - 1;
  let at = n >= len && shared.compare(key, 1, key.length, 0, len) === 0 ? len : -1;
  if (at < 0) {
    const i = shared.indexOf(key);
    // The first match past `n` is stale bytes of an earlier, longer read: none within this one.
    at = i >= 0 && i + key.length <= n ? i + key.length : -1;
  }
  const v = at < 0 ? Number.NaN : digitsAt(shared, at, n);
  return Number.isNaN(v) ? 0 : v;
}

/** The search key of a `key value` line for {@link keptField}: a newline, the key, a space. */
export const statKey = (key: string): Buffer => Buffer.from(`\n${key} `, 'latin1');

/** One kept file. Never throws: an unreadable file reads as null (and is opened again next time). */
export class KeptFile {
  private fd: number | null = null;

  constructor(readonly path: string) {}

  /** The file's text (latin1, at most 16 KiB), or null when it cannot be read. */
  read(): string | null {
    const n = this.readBytes();
    return n < 0 ? null : shared.toString('latin1', 0, n);
  }

  /**
   * The file's bytes (at most 16 KiB) into {@link keptBytes}, good until the next read of any
   * KeptFile: no string made (memory.stat and /proc/<pid>/stat are read ~200 times a second
   * at 1000 bots, and their strings were most of the sampler's garbage).
   * @returns the length read, or -1 when it cannot be read
   */
  readBytes(): number {
    try {
      this.fd ??= fs.openSync(this.path, 'r');
      return fs.readSync(this.fd, shared, 0, MAX_BYTES, 0);
    } catch {
      this.close();
      return -1;
    }
  }

  /** Close the descriptor (a later read opens it again). */
  close(): void {
    if (this.fd === null) return;
    try {
      fs.closeSync(this.fd);
    } catch {
      // already closed
    }
    this.fd = null;
  }
}

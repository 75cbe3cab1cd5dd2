/**
 * A size-capped log file with retention: when it passes `maxBytes` the rotated copies
 * shift (`<file>.1` becomes `.2`, ..., the oldest past `keep` is removed), the file
 * becomes `<file>.1`, and a new file is started, so one log never holds more than
 * about (keep + 1) x maxBytes of disk (logrotate's `rotate N` numbering, newest `.1`).
 * Lines are written as given. Our writer rather than pino-roll: it must survive a full
 * disk and a removed directory (below) and rotate by size from the master's own count,
 * with no worker thread per bot file (pino-roll runs in pino's transport thread).
 *
 * A log file never takes the master down: a write error (ENOSPC on a full disk,
 * EIO, a removed directory) closes the stream, later lines are dropped and
 * counted, and the file is reopened on a write at least {@link REOPEN_EVERY_MS}
 * after the failure; the first line then written says how many were lost.
 */
import fs from 'node:fs';

/** How long after a write error the file is tried again. */
export const REOPEN_EVERY_MS = 1000;
/**
 * Bytes queued to one file before lines are dropped (and counted) instead: the
 * back-pressure of a disk slower than its writers, so memory stays bounded.
 */
export const MAX_QUEUED_BYTES = 8 * 1024 * 1024;

/** A stream with a write queue (fs.WriteStream, process.stdout). */
type Queued = { writableLength: number; write(chunk: string): boolean };

/**
 * Back-pressure for lines: a line is dropped while more than `max` bytes are queued on
 * the stream, and the first line written after says how many were (`msg`, `dropped`).
 */
export function createOverflowGuard(msg: string, max = MAX_QUEUED_BYTES): { write(w: Queued, line: string): number } {
  let dropped = 0;
  return {
    /** @returns the bytes written (a note included), or -1 when the line was dropped */
    write(w, line) {
      if (w.writableLength > max) {
        dropped++;
        return -1;
      }
      let n = 0;
      if (dropped > 0) {
        const note = JSON.stringify({ level: 40, time: new Date().toISOString(), msg, dropped }) + '\n';
        dropped = 0;
        w.write(note);
        n += Buffer.byteLength(note);
      }
      w.write(line);
      return n + Buffer.byteLength(line);
    },
  };
}

/** Lines to the master's stdout (LOG_TO_STDOUT) under the same bound: a stuck reader (a `docker logs` pipe) must not grow it. */
export function stdoutLines(): (line: string) => void {
  const guard = createOverflowGuard('worker lines dropped: stdout did not keep up');
  return (line) => void guard.write(process.stdout, line + '\n');
}

export interface LogFile {
  write(line: string): void;
  /** Lines dropped since the file was opened because it could not be written. */
  dropped(): number;
  /** Resolves once every line written so far is on its way to the disk (or dropped), at most `ms` later. */
  flush(ms?: number): Promise<void>;
  close(): Promise<void>;
}

/**
 * Open (append) a rotated log file at `file`, keeping `keep` rotated copies. Never
 * throws: an unopenable file drops lines until it can be opened.
 */
export function openLogFile(file: string, maxBytes: number, keep = 1, now: () => number = () => performance.now()): LogFile {
  return new RotatedLogFile(file, maxBytes, keep, now);
}

class RotatedLogFile implements LogFile {
  private size: number;
  private stream: fs.WriteStream | null = null;
  private failedAt = -Infinity;
  private droppedTotal = 0;
  private droppedSinceOpen = 0;
  private readonly guard = createOverflowGuard('log lines dropped: the disk did not keep up');

  constructor(private readonly file: string, private readonly maxBytes: number, private readonly keep: number, private readonly now: () => number) {
    try {
      this.size = fs.statSync(file).size;
    } catch {
      this.size = 0;
    }
    this.open();
  }

  private open(): void {
    // Opened synchronously: the file exists before the first write, so a rotation in the same
    // event-loop turn renames the file these lines go to (an async open would let the old
    // stream and the new one both open the new file after the rename).
    let fd: number;
    try {
      fd = fs.openSync(this.file, 'a', 0o600);
    } catch {
      this.stream = null;
      this.failedAt = this.now();
      return;
    }
    const s = fs.createWriteStream('', { fd, mode: 0o600 });
    s.on('error', () => {
      // The stream is destroyed after an error: drop until reopened.
      if (this.stream === s) this.stream = null;
      this.failedAt = this.now();
    });
    this.stream = s;
  }

  private rotate(): void {
    const { file, keep } = this;
    this.stream?.end();
    fs.rmSync(`${file}.${keep}`, { force: true });
    for (let i = keep - 1; i >= 1; i--) {
      try {
        fs.renameSync(`${file}.${i}`, `${file}.${i + 1}`);
      } catch {
        // no such copy yet
      }
    }
    try {
      fs.renameSync(file, `${file}.1`);
    } catch {
      // already moved away (e.g. by logrotate): keep writing to a fresh file
    }
    this.open();
    this.size = 0;
  }

  private drop(): void {
    this.droppedTotal++;
    this.droppedSinceOpen++;
  }

  /** After a failure: reopen once REOPEN_EVERY_MS has passed, and say how many lines were lost. @returns the stream, or null (still failing) */
  private reopen(): fs.WriteStream | null {
    if (this.now() - this.failedAt < REOPEN_EVERY_MS) return null;
    this.open();
    const s = this.stream as fs.WriteStream | null;
    if (s && this.droppedSinceOpen > 0) {
      // The leading newline ends a line the failed write may have left half written.
      const note = '\n' + JSON.stringify({ level: 40, time: new Date().toISOString(), msg: 'log lines dropped: the file could not be written (disk full?)', dropped: this.droppedSinceOpen }) + '\n';
      this.droppedSinceOpen = 0;
      s.write(note);
      this.size += note.length;
    }
    return s;
  }

  write(line: string): void {
    if (!this.stream && !this.reopen()) return this.drop();
    if (this.size >= this.maxBytes) this.rotate();
    if (!this.stream) return this.drop();
    const n = this.guard.write(this.stream, line);
    if (n < 0) this.droppedTotal++;
    else this.size += n;
  }

  dropped(): number {
    return this.droppedTotal;
  }

  flush(ms = 2000): Promise<void> {
    const s = this.stream;
    if (!s || s.destroyed || s.writableLength === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      s.write('', () => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  close(): Promise<void> {
    const s = this.stream;
    if (!s || s.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      s.once('error', () => resolve());
      s.end(() => resolve());
    });
  }
}

/**
 * A size-capped log file: when it passes `maxBytes` it is renamed to `<file>.1`
 * (replacing the previous one) and a new file is started, so one bot never holds
 * more than about 2 x maxBytes of disk. Lines are written as given.
 *
 * A log file never takes the master down: a write error (ENOSPC on a full disk,
 * EIO, a removed directory) closes the stream, later lines are dropped and
 * counted, and the file is reopened on a write at least {@link REOPEN_EVERY_MS}
 * after the failure; the first line then written says how many were lost.
 */
import fs from 'node:fs';

/** How long after a write error the file is tried again. */
export const REOPEN_EVERY_MS = 1000;

export interface LogFile {
  write(line: string): void;
  /** Lines dropped since the file was opened because it could not be written. */
  dropped(): number;
  /** Resolves once every line written so far is on its way to the disk (or dropped), at most `ms` later. */
  flush(ms?: number): Promise<void>;
  close(): Promise<void>;
}

/** Open (append) a rotated log file at `file`. Never throws: an unopenable file drops lines until it can be opened. */
export function openLogFile(file: string, maxBytes: number, now: () => number = () => performance.now()): LogFile {
  let size = 0;
  try {
    size = fs.statSync(file).size;
  } catch {
    size = 0;
  }
  let stream: fs.WriteStream | null = null;
  let failedAt = -Infinity;
  let droppedTotal = 0;
  let droppedSinceOpen = 0;
  const open = (): void => {
    const s = fs.createWriteStream(file, { flags: 'a', mode: 0o600 });
    s.on('error', () => {
      // The stream is destroyed after an error: drop until reopened.
      if (stream === s) stream = null;
      failedAt = now();
    });
    stream = s;
  };
  open();
  const rotate = () => {
    stream?.end();
    try {
      fs.renameSync(file, `${file}.1`);
    } catch {
      // already moved away (e.g. by logrotate): keep writing to a fresh file
    }
    open();
    size = 0;
  };
  const drop = () => {
    droppedTotal++;
    droppedSinceOpen++;
  };
  return {
    write(line) {
      if (!stream) {
        if (now() - failedAt < REOPEN_EVERY_MS) return drop();
        open();
        if (droppedSinceOpen > 0) {
          // The leading newline ends a line the failed write may have left half written.
          const note = '\n' + JSON.stringify({ level: 40, time: new Date().toISOString(), msg: 'log lines dropped: the file could not be written (disk full?)', dropped: droppedSinceOpen }) + '\n';
          droppedSinceOpen = 0;
          stream!.write(note);
          size += note.length;
        }
      }
      if (size >= maxBytes) rotate();
      stream!.write(line);
      size += Buffer.byteLength(line);
    },
    dropped: () => droppedTotal,
    flush(ms = 2000) {
      const s = stream;
      if (!s || s.destroyed || s.writableLength === 0) return Promise.resolve();
      return new Promise((resolve) => {
        const t = setTimeout(resolve, ms);
        s.write('', () => {
          clearTimeout(t);
          resolve();
        });
      });
    },
    close() {
      const s = stream;
      if (!s || s.destroyed) return Promise.resolve();
      return new Promise((resolve) => {
        s.once('error', () => resolve());
        s.end(resolve);
      });
    },
  };
}

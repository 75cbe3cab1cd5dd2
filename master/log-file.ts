/**
 * A size-capped log file: when it passes `maxBytes` it is renamed to `<file>.1`
 * (replacing the previous one) and a new file is started, so one bot never holds
 * more than about 2 x maxBytes of disk. Lines are written as given.
 */
import fs from 'node:fs';

export interface LogFile {
  write(line: string): void;
  close(): Promise<void>;
}

/** Open (append) a rotated log file at `file`. */
export function openLogFile(file: string, maxBytes: number): LogFile {
  let size = 0;
  try {
    size = fs.statSync(file).size;
  } catch {
    size = 0;
  }
  let stream = fs.createWriteStream(file, { flags: 'a', mode: 0o600 });
  const rotate = () => {
    stream.end();
    try {
      fs.renameSync(file, `${file}.1`);
    } catch {
      // already moved away (e.g. by logrotate): keep writing to a fresh file
    }
    stream = fs.createWriteStream(file, { flags: 'a', mode: 0o600 });
    size = 0;
  };
  return {
    write(line) {
      if (size >= maxBytes) rotate();
      stream.write(line);
      size += Buffer.byteLength(line);
    },
    close() {
      return new Promise((resolve) => stream.end(resolve));
    },
  };
}

/**
 * Split a byte stream into lines and hand each to `onLine` (without the newline).
 * A partial last line is kept until more arrives or the stream ends.
 */
export function forEachLine(stream: NodeJS.ReadableStream, onLine: (line: string) => void): void {
  let rest = '';
  stream.setEncoding?.('utf8');
  stream.on('data', (chunk: string) => {
    const parts = (rest + chunk).split('\n');
    rest = parts.pop() ?? '';
    for (const p of parts) if (p !== '') onLine(p);
  });
  stream.on('end', () => {
    if (rest !== '') onLine(rest);
    rest = '';
  });
}

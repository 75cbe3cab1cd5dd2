/**
 * The worker's end of its channel to the master (see master/child-process.ts):
 * fd 3 carries master -> worker messages, fd 4 worker -> master, each
 * newline-delimited JSON. The master's side is the one that must distrust; this
 * side still parses with the same bounded splitter, so a bad frame is dropped.
 */
import fs from 'node:fs';
import net from 'node:net';
import { createLineSplitter } from '../common/line-splitter.js';
import type { WorkerMessage } from './protocol.js';

/** fds the master gives every worker. */
export const FROM_MASTER_FD = 3;
export const TO_MASTER_FD = 4;
/** Largest master -> worker frame read (a batch of webhook updates is far below this). */
const MAX_FRAME_BYTES = 64 * 1024 * 1024;

/** The channel as worker/main.ts uses it. */
export interface WorkerChannel {
  /** Queue one message to the master; dropped once the channel is closed. */
  send(m: WorkerMessage): void;
  /** Resolves when everything sent so far is written (or the channel broke), at most `ms` later. */
  flush(ms: number): Promise<void>;
}

/**
 * Write one frame. A short one with nothing queued before it goes straight to the pipe: one
 * write(2), atomic below PIPE_BUF (4096 bytes; 1024 UTF-16 units are at most 3072 bytes),
 * ~10 µs against ~80-120 µs through the stream (measured per heartbeat). A full pipe (EAGAIN)
 * or any other error: the stream takes it, and reports a broken channel as it always did.
 */
function writeFrame(output: net.Socket, line: string): void {
  if (line.length <= 1024 && output.writableLength === 0) {
    try {
      fs.writeSync(TO_MASTER_FD, line);
      return;
    } catch {
      // queued below
    }
  }
  output.write(line);
}

/**
 * Open both fds. `onMessage` gets each frame JSON-parsed (unvalidated), `onClose`
 * is called once when the master's end closes (the master died or let go: the
 * worker must exit, so a dead master leaves no orphan).
 */
export function openWorkerChannel(onMessage: (m: unknown) => void, onClose: () => void): WorkerChannel {
  const input = new net.Socket({ fd: FROM_MASTER_FD, readable: true, writable: false });
  const output = new net.Socket({ fd: TO_MASTER_FD, readable: false, writable: true });
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    onClose();
  };
  const splitter = createLineSplitter({
    maxLineBytes: MAX_FRAME_BYTES,
    onLine(line, truncated) {
      if (truncated) return;
      let m: unknown;
      try {
        m = JSON.parse(line.toString('utf8'));
      } catch {
        return;
      }
      onMessage(m);
    },
  });
  input.on('data', (c: Buffer) => splitter.push(c));
  input.on('end', close);
  input.on('close', close);
  input.on('error', close);
  // Neither end keeps the worker alive by itself: timers, the poll and the handler's work do.
  input.unref();
  output.unref();
  let broken = false;
  output.on('error', () => {
    broken = true;
    close();
  });
  return {
    send(m) {
      if (broken || output.destroyed) return;
      writeFrame(output, JSON.stringify(m) + '\n');
    },
    flush(ms) {
      if (broken || output.destroyed || output.writableLength === 0) return Promise.resolve();
      return new Promise((resolve) => {
        const t = setTimeout(resolve, ms);
        output.write('', () => {
          clearTimeout(t);
          resolve();
        });
      });
    },
  };
}

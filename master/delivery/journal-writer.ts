/**
 * The master's side of the journal's writer thread ({@link ./journal-thread.ts}).
 * Group commit: one batch is in the thread at a time, and whatever is queued while
 * it commits goes as the next batch, in one transaction (under load batches grow,
 * idle a write waits for one commit). Each `write` resolves when its batch is
 * committed. Writes marked `lazy` (acks: losing one only repeats an update) do not
 * start a batch themselves: they ride with the next one, at most
 * {@link LAZY_FLUSH_MS} later.
 */
import { Worker } from 'node:worker_threads';
import { ErrorCodes, fail } from '../../common/errors.js';
import type { JournalOps, JournalSync } from './journal-store.js';

/** Queue of changes to `journal.db`. */
export interface JournalWriter {
  /**
   * Queue ops for the next batch; `lazy`: do not start a batch for them (they go
   * with the next one, within {@link LAZY_FLUSH_MS}).
   * @returns resolves once committed; rejects (BF_ERR_JOURNAL) when the batch failed
   */
  write(ops: Partial<JournalOps>, lazy?: boolean): Promise<void>;
  /** Commit what is queued and end the thread. */
  close(): Promise<void>;
}

type Waiter = { resolve: () => void; reject: (e: Error) => void };

/** Longest a lazy write (an ack) waits for a batch to ride with, ms. */
export const LAZY_FLUSH_MS = 50;

/** Start the writer thread on `file`. @returns once the thread has opened the file; @throws BF_ERR_JOURNAL when it cannot */
export async function startJournalWriter(file: string, sync: JournalSync): Promise<JournalWriter> {
  const worker = new Worker(new URL('./journal-thread.js', import.meta.url), { workerData: { file, sync } });
  let seq = 0;
  let ops: JournalOps = { insert: [], ack: [], deaths: [] };
  let waiters: Waiter[] = [];
  const inFlight = new Map<number, Waiter[]>();
  let scheduled: NodeJS.Immediate | null = null;
  let lazyTimer: NodeJS.Timeout | null = null;
  /** A batch is in the thread: the next one waits for its answer. */
  let busy = false;
  /** Something not lazy is queued. */
  let urgent = false;
  /** A lazy write has waited its LAZY_FLUSH_MS. */
  let lazyDue = false;
  let dead: Error | null = null;
  /** Resolves close() once the batch in the thread is answered. */
  let onAnswer: (() => void) | null = null;
  /** The thread is gone: every write, sent or still queued, fails (intake answers 503). */
  const failAll = (e: Error) => {
    for (const ws of inFlight.values()) for (const w of ws) w.reject(e);
    inFlight.clear();
    for (const w of waiters) w.reject(e);
    waiters = [];
    ops = { insert: [], ack: [], deaths: [] };
    busy = false;
    onAnswer?.();
  };
  await new Promise<void>((resolve, reject) => {
    worker.once('message', () => resolve());
    worker.once('error', (e) => reject(fail(ErrorCodes.JOURNAL, `journal ${file} cannot be opened: ${e.message.split('\n')[0]}`, e)));
  });
  worker.on('message', (m: { seq: number; error?: string }) => {
    const ws = inFlight.get(m.seq) ?? [];
    inFlight.delete(m.seq);
    busy = false;
    const e = m.error === undefined ? null : fail(ErrorCodes.JOURNAL, `journal write failed: ${m.error}`);
    for (const w of ws) (e ? w.reject(e) : w.resolve());
    onAnswer?.();
    if (urgent || lazyDue) flush();
  });
  worker.on('error', (e) => {
    dead = fail(ErrorCodes.JOURNAL, `journal writer thread failed: ${e.message.split('\n')[0]}`, e);
    failAll(dead);
  });
  worker.on('exit', () => {
    dead ??= fail(ErrorCodes.JOURNAL, 'journal writer thread ended');
    failAll(dead);
  });
  const flush = () => {
    if (scheduled) clearImmediate(scheduled);
    scheduled = null;
    if (waiters.length === 0 || busy || dead) return;
    if (lazyTimer) clearTimeout(lazyTimer);
    lazyTimer = null;
    busy = true;
    urgent = false;
    lazyDue = false;
    inFlight.set(++seq, waiters);
    worker.postMessage({ seq, ops });
    ops = { insert: [], ack: [], deaths: [] };
    waiters = [];
  };
  return {
    write(o, lazy = false) {
      if (dead) return Promise.reject(dead);
      if (o.insert) for (const r of o.insert) ops.insert.push(r);
      if (o.ack) for (const r of o.ack) ops.ack.push(r);
      if (o.deaths) for (const r of o.deaths) ops.deaths.push(r);
      if (o.expire) ops.expire = o.expire;
      if (!lazy) {
        urgent = true;
        if (!busy) scheduled ??= setImmediate(flush);
      } else lazyTimer ??= setTimeout(() => {
        lazyTimer = null;
        lazyDue = true;
        flush();
      }, LAZY_FLUSH_MS);
      return new Promise<void>((resolve, reject) => waiters.push({ resolve, reject }));
    },
    async close() {
      if (lazyTimer) clearTimeout(lazyTimer);
      lazyTimer = null;
      // The batch in the thread, then what is queued.
      if (busy) await new Promise<void>((r) => (onAnswer = r));
      onAnswer = null;
      flush();
      if (dead) return;
      // The thread answers batches in order, so every earlier batch is answered before it exits.
      const exited = new Promise<void>((r) => worker.once('exit', () => r()));
      worker.postMessage('close');
      await exited;
    },
  };
}

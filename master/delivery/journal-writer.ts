/**
 * The master's side of the journal's writer thread ({@link ./journal-thread.ts}): ops
 * queued during one event-loop turn are posted as one batch, so they commit in one
 * transaction, and each `write` resolves when its batch is committed.
 */
import { Worker } from 'node:worker_threads';
import { ErrorCodes, fail } from '../../common/errors.js';
import type { JournalOps, JournalSync } from './journal-store.js';

/** Queue of changes to `journal.db`. */
export interface JournalWriter {
  /** Queue ops for this turn's batch. @returns resolves once committed; rejects (BF_ERR_JOURNAL) when the batch failed */
  write(ops: Partial<JournalOps>): Promise<void>;
  /** Commit what is queued and end the thread. */
  close(): Promise<void>;
}

type Waiter = { resolve: () => void; reject: (e: Error) => void };

/** Start the writer thread on `file`. @returns once the thread has opened the file; @throws BF_ERR_JOURNAL when it cannot */
export async function startJournalWriter(file: string, sync: JournalSync): Promise<JournalWriter> {
  const worker = new Worker(new URL('./journal-thread.js', import.meta.url), { workerData: { file, sync } });
  let seq = 0;
  let ops: JournalOps = { insert: [], ack: [], deaths: [] };
  let waiters: Waiter[] = [];
  const inFlight = new Map<number, Waiter[]>();
  let scheduled: NodeJS.Immediate | null = null;
  let dead: Error | null = null;
  const failAll = (e: Error) => {
    for (const ws of inFlight.values()) for (const w of ws) w.reject(e);
    inFlight.clear();
  };
  await new Promise<void>((resolve, reject) => {
    worker.once('message', () => resolve());
    worker.once('error', (e) => reject(fail(ErrorCodes.JOURNAL, `journal ${file} cannot be opened: ${e.message.split('\n')[0]}`, e)));
  });
  worker.on('message', (m: { seq: number; error?: string }) => {
    const ws = inFlight.get(m.seq) ?? [];
    inFlight.delete(m.seq);
    const e = m.error === undefined ? null : fail(ErrorCodes.JOURNAL, `journal write failed: ${m.error}`);
    for (const w of ws) (e ? w.reject(e) : w.resolve());
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
    scheduled = null;
    if (waiters.length === 0) return;
    inFlight.set(++seq, waiters);
    worker.postMessage({ seq, ops });
    ops = { insert: [], ack: [], deaths: [] };
    waiters = [];
  };
  return {
    write(o) {
      if (dead) return Promise.reject(dead);
      if (o.insert) for (const r of o.insert) ops.insert.push(r);
      if (o.ack) for (const r of o.ack) ops.ack.push(r);
      if (o.deaths) for (const r of o.deaths) ops.deaths.push(r);
      if (o.expire) ops.expire = o.expire;
      scheduled ??= setImmediate(flush);
      return new Promise<void>((resolve, reject) => waiters.push({ resolve, reject }));
    },
    async close() {
      if (scheduled) clearImmediate(scheduled);
      flush();
      if (dead) return;
      // The thread answers batches in order, so every earlier batch is answered before it exits.
      const exited = new Promise<void>((r) => worker.once('exit', () => r()));
      worker.postMessage('close');
      await exited;
    },
  };
}

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
  await new Promise<void>((resolve, reject) => {
    worker.once('message', () => resolve());
    worker.once('error', (e) => reject(fail(ErrorCodes.JOURNAL, `journal ${file} cannot be opened: ${e.message.split('\n')[0]}`, e)));
  });
  return new ThreadWriter(worker);
}

const noOps = (): JournalOps => ({ insert: [], ack: [], deaths: [] });

/** Batches writes to the thread: one batch in the thread at a time, the next one gathering meanwhile. */
class ThreadWriter implements JournalWriter {
  private seq = 0;
  private ops = noOps();
  private waiters: Waiter[] = [];
  private readonly inFlight = new Map<number, Waiter[]>();
  private scheduled: NodeJS.Immediate | null = null;
  private lazyTimer: NodeJS.Timeout | null = null;
  /** A batch is in the thread: the next one waits for its answer. */
  private busy = false;
  /** Something not lazy is queued. */
  private urgent = false;
  /** A lazy write has waited its LAZY_FLUSH_MS. */
  private lazyDue = false;
  private dead: Error | null = null;
  /** Resolves close() once the batch in the thread is answered. */
  private onAnswer: (() => void) | null = null;
  private readonly flushNow = (): void => this.flush();

  constructor(private readonly worker: Worker) {
    worker.on('message', (m: { seq: number; error?: string }) => this.answered(m));
    worker.on('error', (e) => {
      this.dead = fail(ErrorCodes.JOURNAL, `journal writer thread failed: ${e.message.split('\n')[0]}`, e);
      this.failAll(this.dead);
    });
    worker.on('exit', () => {
      this.dead ??= fail(ErrorCodes.JOURNAL, 'journal writer thread ended');
      this.failAll(this.dead);
    });
  }

  /** The thread answered batch `m.seq`: its writes settle, and the next batch goes if one is due. */
  private answered(m: { seq: number; error?: string }): void {
    const ws = this.inFlight.get(m.seq) ?? [];
    this.inFlight.delete(m.seq);
    this.busy = false;
    const e = m.error === undefined ? null : fail(ErrorCodes.JOURNAL, `journal write failed: ${m.error}`);
    for (const w of ws) (e ? w.reject(e) : w.resolve());
    this.onAnswer?.();
    if (this.urgent || this.lazyDue) this.flush();
  }

  /** The thread is gone: every write, sent or still queued, fails (intake answers 503). */
  private failAll(e: Error): void {
    for (const ws of this.inFlight.values()) for (const w of ws) w.reject(e);
    this.inFlight.clear();
    for (const w of this.waiters) w.reject(e);
    this.waiters = [];
    this.ops = noOps();
    this.busy = false;
    this.onAnswer?.();
  }

  private flush(): void {
    if (this.scheduled) clearImmediate(this.scheduled);
    this.scheduled = null;
    if (this.waiters.length === 0 || this.busy || this.dead) return;
    if (this.lazyTimer) clearTimeout(this.lazyTimer);
    this.lazyTimer = null;
    this.busy = true;
    this.urgent = false;
    this.lazyDue = false;
    this.inFlight.set(++this.seq, this.waiters);
    this.worker.postMessage({ seq: this.seq, ops: this.ops });
    this.ops = noOps();
    this.waiters = [];
  }

  write(o: Partial<JournalOps>, lazy = false): Promise<void> {
    if (this.dead) return Promise.reject(this.dead);
    const { ops } = this;
    if (o.insert) for (const r of o.insert) ops.insert.push(r);
    if (o.ack) for (const r of o.ack) ops.ack.push(r);
    if (o.deaths) for (const r of o.deaths) ops.deaths.push(r);
    if (o.expire) ops.expire = o.expire;
    if (!lazy) {
      this.urgent = true;
      if (!this.busy) this.scheduled ??= setImmediate(this.flushNow);
    } else this.lazyTimer ??= setTimeout(() => {
      this.lazyTimer = null;
      this.lazyDue = true;
      this.flush();
    }, LAZY_FLUSH_MS);
    return new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  async close(): Promise<void> {
    if (this.lazyTimer) clearTimeout(this.lazyTimer);
    this.lazyTimer = null;
    // The batch in the thread, then what is queued.
    if (this.busy) await new Promise<void>((r) => (this.onAnswer = r));
    this.onAnswer = null;
    this.flush();
    if (this.dead) return;
    // The thread answers batches in order, so every earlier batch is answered before it exits.
    const exited = new Promise<void>((r) => this.worker.once('exit', () => r()));
    this.worker.postMessage('close');
    await exited;
  }
}

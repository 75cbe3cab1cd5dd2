/**
 * The journal's writer: group commit over a storage engine (master/store/journal-engine.ts:
 * SQLite with its writer thread, or PostgreSQL). One batch is committing at a time, and
 * whatever is queued meanwhile goes as the next batch, in one transaction (under load
 * batches grow; idle, a write waits for one commit). Each `write` resolves when its batch
 * is committed. Writes marked `lazy` (acks: losing one only repeats an update) do not
 * start a batch themselves: they ride with the next one, at most {@link LAZY_FLUSH_MS} later.
 *
 * A failed batch: its intake (rows to insert) is refused at once (the webhook answers 503
 * and Telegram keeps the update), while its acks, deaths and expiry, which are idempotent,
 * stay queued and are tried again with backoff ({@link RETRY_MIN_MS} doubling to
 * {@link RETRY_MAX_MS}) until the engine commits again: a database that was down for a while
 * leaves no acked update pending behind it. At most {@link MAX_RETAINED_ROWS} such rows wait;
 * past that the oldest are dropped (an ack lost only repeats an update after a restart).
 */
import type { JournalEngine, JournalOps } from '../store/journal-engine.js';

/** Queue of changes to the journal. */
export interface JournalWriter {
  /**
   * Queue ops for the next batch; `lazy`: do not start a batch for them (they go
   * with the next one, within {@link LAZY_FLUSH_MS}).
   * @returns resolves once committed; rejects (BF_ERR_JOURNAL, BF_ERR_STORE) when the
   * batch failed and `ops` held rows to insert (other ops are retried, not rejected,
   * unless the engine can never commit again)
   */
  write(ops: Partial<JournalOps>, lazy?: boolean): Promise<void>;
  /** Why the last batch failed, while no batch has committed since; else null. */
  problem(): string | null;
  /** Commit what is queued and close the engine (retried ops still failing are given up). */
  close(): Promise<void>;
}

type Queued = { ops: Partial<JournalOps>; resolve: () => void; reject: (e: Error) => void };

/** Longest a lazy write (an ack) waits for a batch to ride with, ms. */
export const LAZY_FLUSH_MS = 50;
/** First wait before ops of a failed batch are tried again, ms (doubling per failure). */
export const RETRY_MIN_MS = 250;
/** Longest wait between tries of a failing engine, ms. */
export const RETRY_MAX_MS = 5000;
/** Rows of acks and deaths kept for a retry at most (about 100 bytes each). */
export const MAX_RETAINED_ROWS = 200_000;

const rowsOf = (o: Partial<JournalOps>) => (o.insert?.length ?? 0) + (o.ack?.length ?? 0) + (o.deaths?.length ?? 0);

/** Merge queued writes into one batch (the last expiry wins). */
function merge(queue: readonly Queued[]): JournalOps {
  const ops: JournalOps = { insert: [], ack: [], deaths: [] };
  for (const { ops: o } of queue) {
    if (o.insert) for (const r of o.insert) ops.insert.push(r);
    if (o.ack) for (const r of o.ack) ops.ack.push(r);
    if (o.deaths) for (const r of o.deaths) ops.deaths.push(r);
    if (o.expire) ops.expire = o.expire;
  }
  return ops;
}

/** What the writer tells its owner (for the log; it is the one report of a failed write): a batch failed or the engine is dead (with the rows kept for a retry), a batch committed after failures. */
export interface WriterEvents {
  onFailure?(err: Error, retainedRows: number): void;
  onRecovered?(failedBatches: number): void;
}

/** A group-commit writer over `engine`. */
export function createJournalWriter(engine: JournalEngine, events: WriterEvents = {}): JournalWriter {
  return new GroupCommitWriter(engine, events);
}

/** Batches writes: one batch committing at a time, the next one gathering meanwhile. */
class GroupCommitWriter implements JournalWriter {
  private queue: Queued[] = [];
  private scheduled: NodeJS.Immediate | null = null;
  private lazyTimer: NodeJS.Timeout | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private retryMs = RETRY_MIN_MS;
  private lastError: Error | null = null;
  private failedBatches = 0;
  /** A batch is committing: the next one waits for it. */
  private committing: Promise<void> | null = null;
  /** Something not lazy is queued. */
  private urgent = false;
  /** A lazy write has waited its LAZY_FLUSH_MS. */
  private lazyDue = false;
  private closing = false;
  private readonly flushNow = (): void => this.flush();

  constructor(private readonly engine: JournalEngine, private readonly events: WriterEvents) {}

  private flush(): void {
    if (this.scheduled) clearImmediate(this.scheduled);
    this.scheduled = null;
    if (this.queue.length === 0 || this.committing) return;
    const dead = this.engine.dead();
    if (dead) return this.failQueued(dead);
    for (const t of [this.lazyTimer, this.retryTimer]) if (t) clearTimeout(t);
    this.lazyTimer = this.retryTimer = null;
    this.urgent = false;
    this.lazyDue = false;
    const batch = this.queue;
    this.queue = [];
    this.committing = this.engine.commit(merge(batch)).then(() => {
      if (this.failedBatches > 0) this.events.onRecovered?.(this.failedBatches);
      this.lastError = null;
      this.failedBatches = 0;
      this.retryMs = RETRY_MIN_MS;
      for (const q of batch) q.resolve();
    }, (err: unknown) => this.failed(batch, err instanceof Error ? err : new Error(String(err)))).finally(() => {
      this.committing = null;
      if (this.urgent || this.lazyDue) this.flush();
    });
  }

  /** A batch failed: intake refused, the idempotent rest queued again (first) for a retry. */
  private failed(batch: Queued[], err: Error): void {
    this.lastError = err;
    this.failedBatches++;
    const again: Queued[] = [];
    for (const q of batch) {
      if (q.ops.insert?.length || this.closing) q.reject(err);
      else again.push(q);
    }
    this.queue = [...again, ...this.queue];
    let retained = this.queue.reduce((n, q) => n + rowsOf(q.ops), 0);
    while (retained > MAX_RETAINED_ROWS && this.queue.length > 1) {
      const dropped = this.queue.shift()!;
      retained -= rowsOf(dropped.ops);
      dropped.reject(err);
    }
    this.events.onFailure?.(err, retained);
    if (again.length > 0 && !this.closing) {
      this.retryTimer ??= setTimeout(() => {
        this.retryTimer = null;
        this.lazyDue = true;
        this.flush();
      }, this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
    }
  }

  /** The engine can never commit again: every queued write fails (intake answers 503). */
  private failQueued(e: Error): void {
    this.lastError = e;
    this.events.onFailure?.(e, 0);
    for (const q of this.queue) q.reject(e);
    this.queue = [];
  }

  write(ops: Partial<JournalOps>, lazy = false): Promise<void> {
    const dead = this.engine.dead();
    if (dead) {
      this.lastError = dead;
      this.events.onFailure?.(dead, 0);
      return Promise.reject(dead);
    }
    if (!lazy) {
      this.urgent = true;
      if (!this.committing) this.scheduled ??= setImmediate(this.flushNow);
    } else this.lazyTimer ??= setTimeout(() => {
      this.lazyTimer = null;
      this.lazyDue = true;
      this.flush();
    }, LAZY_FLUSH_MS);
    return new Promise<void>((resolve, reject) => this.queue.push({ ops, resolve, reject }));
  }

  problem(): string | null {
    return this.lastError ? this.lastError.message.split('\n')[0]! : null;
  }

  async close(): Promise<void> {
    this.closing = true;
    for (const t of [this.lazyTimer, this.retryTimer]) if (t) clearTimeout(t);
    this.lazyTimer = this.retryTimer = null;
    // The batch committing, then what is queued.
    await this.committing;
    this.flush();
    await this.committing;
    await this.engine.close();
  }
}

/**
 * The journal's writer: group commit over a storage engine (master/store/journal-engine.ts:
 * SQLite with its writer thread, or PostgreSQL). One batch is committing at a time, and
 * whatever is queued meanwhile goes as the next batch, in one transaction (under load
 * batches grow; idle, a write waits for one commit). Each `write` resolves when its batch
 * is committed. Writes marked `lazy` (acks: losing one only repeats an update) do not
 * start a batch themselves: they ride with the next one, at most {@link LAZY_FLUSH_MS} later.
 */
import type { JournalEngine, JournalOps } from '../store/journal-engine.js';

/** Queue of changes to the journal. */
export interface JournalWriter {
  /**
   * Queue ops for the next batch; `lazy`: do not start a batch for them (they go
   * with the next one, within {@link LAZY_FLUSH_MS}).
   * @returns resolves once committed; rejects (BF_ERR_JOURNAL, BF_ERR_STORE) when the batch failed
   */
  write(ops: Partial<JournalOps>, lazy?: boolean): Promise<void>;
  /** Commit what is queued and close the engine. */
  close(): Promise<void>;
}

type Waiter = { resolve: () => void; reject: (e: Error) => void };

/** Longest a lazy write (an ack) waits for a batch to ride with, ms. */
export const LAZY_FLUSH_MS = 50;

const noOps = (): JournalOps => ({ insert: [], ack: [], deaths: [] });

/** A group-commit writer over `engine`. */
export function createJournalWriter(engine: JournalEngine): JournalWriter {
  return new GroupCommitWriter(engine);
}

/** Batches writes: one batch committing at a time, the next one gathering meanwhile. */
class GroupCommitWriter implements JournalWriter {
  private ops = noOps();
  private waiters: Waiter[] = [];
  private scheduled: NodeJS.Immediate | null = null;
  private lazyTimer: NodeJS.Timeout | null = null;
  /** A batch is committing: the next one waits for it. */
  private committing: Promise<void> | null = null;
  /** Something not lazy is queued. */
  private urgent = false;
  /** A lazy write has waited its LAZY_FLUSH_MS. */
  private lazyDue = false;
  private readonly flushNow = (): void => this.flush();

  constructor(private readonly engine: JournalEngine) {}

  private flush(): void {
    if (this.scheduled) clearImmediate(this.scheduled);
    this.scheduled = null;
    if (this.waiters.length === 0 || this.committing) return;
    const dead = this.engine.dead();
    if (dead) return this.failQueued(dead);
    if (this.lazyTimer) clearTimeout(this.lazyTimer);
    this.lazyTimer = null;
    this.urgent = false;
    this.lazyDue = false;
    const { ops, waiters } = this;
    this.ops = noOps();
    this.waiters = [];
    this.committing = this.engine.commit(ops).then(
      () => waiters.forEach((w) => w.resolve()),
      (err: unknown) => waiters.forEach((w) => w.reject(err instanceof Error ? err : new Error(String(err)))),
    ).finally(() => {
      this.committing = null;
      if (this.urgent || this.lazyDue) this.flush();
    });
  }

  /** The engine can never commit again: every queued write fails (intake answers 503). */
  private failQueued(e: Error): void {
    for (const w of this.waiters) w.reject(e);
    this.waiters = [];
    this.ops = noOps();
  }

  write(o: Partial<JournalOps>, lazy = false): Promise<void> {
    const dead = this.engine.dead();
    if (dead) return Promise.reject(dead);
    const { ops } = this;
    if (o.insert) for (const r of o.insert) ops.insert.push(r);
    if (o.ack) for (const r of o.ack) ops.ack.push(r);
    if (o.deaths) for (const r of o.deaths) ops.deaths.push(r);
    if (o.expire) ops.expire = o.expire;
    if (!lazy) {
      this.urgent = true;
      if (!this.committing) this.scheduled ??= setImmediate(this.flushNow);
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
    // The batch committing, then what is queued.
    await this.committing;
    this.flush();
    await this.committing;
    await this.engine.close();
  }
}

/**
 * The journal a cluster's masters share (PostgreSQL; DESIGN.md, "The cluster": webhooks). Any
 * master's webhook port takes an update for any bot of the cluster: it commits the row to
 * `journal_pending` (the commit NOTIFYs the bot's id) and answers 200; only the bot's owner
 * delivers it. The owner's index (journal.ts) is filled from the database alone: on each
 * NOTIFY for a bot it owns it reads the rows it does not hold yet, in `update_id` order, so
 * an update committed by one master before a later one was posted to another is delivered
 * first (order per chat across masters). Its own intake takes the same path. At most
 * `maxPending` updates of a bot are held in memory; the rest wait in the database and are
 * read as acks free room. A master that takes a bot reads its pending rows and its recent
 * acked ids (dedup, and the skip list of a new polling worker) before the bot starts; one
 * that loses it drops its index once the worker is gone. A read that fails is tried again
 * (RETRY_MS). Guarantee: at least once, as the journal of one master.
 */
import type { Update } from 'node-telegram-bot-api';
import { errorMessage } from '../../common/errors.js';
import type { SharedJournalSource } from '../store/journal-engine.js';
import { adoptRows, clearIndex, MAX_ACKED_PER_BOT } from './journal-index.js';
import type { JournalWriter } from './journal-writer.js';
import { createJournal, type IndexedJournalParts, type IntakeResult, type Journal, type JournalOptions } from './journal.js';

/** A failed read of a bot's rows is tried again after this (ms). */
const RETRY_MS = 1000;

/** One owned bot's reads: one at a time, `again` when a NOTIFY came during one, `more` when the database holds rows past the bound. */
interface Reading { running: Promise<void> | null; again: boolean; more: boolean; retry: NodeJS.Timeout | null }

/** The shared journal over `o.writer` and the engine's `source`; nothing is loaded at start (a bot's rows are read when this master takes it). */
export function createSharedJournal(o: Omit<JournalOptions, 'loaded'> & { source: SharedJournalSource }): Journal {
  const inner = createJournal({ ...o, loaded: { pending: [], acked: [] } });
  return new SharedJournal(inner, o.writer, o);
}

class SharedJournal implements Journal {
  private readonly owned = new Map<string, Reading>();
  private readonly unwatch: () => Promise<void>;

  constructor(private readonly inner: IndexedJournalParts, private readonly writer: JournalWriter, private readonly o: Omit<JournalOptions, 'loaded'> & { source: SharedJournalSource }) {
    this.unwatch = o.source.watch((bot) => {
      if (bot === null) for (const id of this.owned.keys()) this.read(id);
      else if (this.owned.has(bot)) this.read(bot);
    });
  }

  /** Committed to the shared table whoever owns the bot; the owner learns of it by the commit's NOTIFY. A bot owned here answers a duplicate from its index. */
  accept(botId: string, update: Update, replay = false, raw?: string): Promise<IntakeResult> {
    const b = this.inner.bot(botId);
    b.c.received++;
    const id = update.update_id;
    if (!replay && this.owned.has(botId) && (b.pending.has(id) || b.acked.has(id))) {
      b.c.duplicates++;
      return Promise.resolve('duplicate');
    }
    const payload = raw ?? JSON.stringify(update);
    return this.writer.write({ insert: [[botId, id, payload, this.o.now(), replay ? 1 : 0]] }).then(() => {
      b.c.journaled++;
      return 'journaled' as const;
    }, () => 'failed' as const);
  }

  async own(botId: string): Promise<void> {
    const b = this.inner.bot(botId);
    clearIndex(b);
    const r: Reading = { running: null, again: false, more: false, retry: null };
    this.owned.set(botId, r);
    try {
      const acked = await this.o.source.ackedOf(botId, this.o.now() - this.o.dedupWindowMs, MAX_ACKED_PER_BOT);
      if (this.owned.get(botId) === r) for (const a of acked) b.acked.set(a.update_id, a.acked_at);
    } catch (err) {
      this.o.logger.warn({ botId, err: errorMessage(err) }, "journal: the bot's acked ids could not be read (an update may be handled twice)");
    }
    this.read(botId);
    await r.running;
  }

  disown(botId: string): void {
    const r = this.owned.get(botId);
    if (r?.retry) clearTimeout(r.retry);
    this.owned.delete(botId);
    clearIndex(this.inner.bot(botId));
  }

  /** Read the bot's rows this master does not hold (one read at a time; a NOTIFY meanwhile reads again after). */
  private read(botId: string): void {
    const r = this.owned.get(botId);
    if (!r) return;
    if (r.running) return void (r.again = true);
    r.running = this.readOnce(botId, r).finally(() => {
      r.running = null;
      if (r.again && this.owned.get(botId) === r) (r.again = false), this.read(botId);
    });
  }

  private async readOnce(botId: string, r: Reading): Promise<void> {
    const b = this.inner.bot(botId);
    const room = this.o.maxPending - b.pending.size;
    if (room <= 0) return void (r.more = true);
    let rows;
    try {
      rows = await this.o.source.pendingOf(botId, [...b.pending.keys()], room);
    } catch (err) {
      if (this.owned.get(botId) !== r) return;
      this.o.logger.warn({ botId, err: errorMessage(err) }, "journal: the bot's pending updates could not be read: trying again");
      r.retry ??= setTimeout(() => ((r.retry = null), this.read(botId)), RETRY_MS).unref();
      return;
    }
    if (this.owned.get(botId) !== r) return;
    r.more = rows.length >= room;
    const acked = adoptRows(b, rows, (row) => this.o.logger.error({ botId, updateId: row.update_id }, 'journal row is not JSON; dropped'));
    // Handled here, its ack not yet written (or lost with an earlier owner's batch): written again, the row leaves.
    const fence = this.o.epochOf?.(botId) ?? -1;
    if (acked.length > 0) this.writer.write({ ack: acked.map((id): [string, number, number, number] => [botId, id, this.o.now(), fence]) }, true).catch(() => undefined);
    this.inner.schedulePump(b);
  }

  acked(botId: string, acks: ReadonlyArray<{ updateId: number; ok: boolean }>): void {
    this.inner.acked(botId, acks);
    const r = this.owned.get(botId);
    if (r?.more && this.inner.bot(botId).pending.size <= this.o.maxPending / 2) this.read(botId);
  }

  attach(botId: string, sink: Parameters<Journal['attach']>[1]): void {
    this.inner.attach(botId, sink);
  }
  pause(botId: string): void {
    this.inner.pause(botId);
  }
  workerGone(botId: string, unexplained: boolean): void {
    this.inner.workerGone(botId, unexplained);
  }
  ackedIds(botId: string): number[] {
    return this.inner.ackedIds(botId);
  }
  stats(botId: string): ReturnType<Journal['stats']> {
    return this.inner.stats(botId);
  }
  allStats(): ReturnType<Journal['allStats']> {
    return this.inner.allStats();
  }
  statsByBot(): ReturnType<Journal['statsByBot']> {
    return this.inner.statsByBot();
  }
  writeProblem(): string | null {
    return this.inner.writeProblem();
  }
  deliveryLatency(): ReturnType<Journal['deliveryLatency']> {
    return this.inner.deliveryLatency();
  }
  take(botId: string): number {
    return this.inner.take(botId);
  }
  expire(): void {
    this.inner.expire();
  }
  async close(): Promise<void> {
    for (const r of this.owned.values()) if (r.retry) clearTimeout(r.retry);
    await this.unwatch();
    await this.inner.close();
  }
}

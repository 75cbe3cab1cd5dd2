/**
 * The journal (DESIGN.md: "A valid update is journaled, then 200"): every webhook
 * update is committed to `data/journal.db` before Telegram gets its 200, then
 * delivered from here to the bot's worker, in `update_id` order (the worker keeps
 * order per chat and runs chats concurrently), at most `window` in flight per bot.
 * The worker's ack removes the entry. Updates for a bot whose worker is not running
 * wait here; after a master restart, SIGKILL included, whatever was not acked is
 * loaded and delivered again. Dedup is by (bot, `update_id`): an update already
 * pending, or acked within `dedupWindowMs` (kept durably), is answered 200 and not
 * handled again. Guarantee: at least once; twice only when a handler ran and its
 * ack was lost with the worker, or with the master within the acks' lazy write
 * ({@link LAZY_FLUSH_MS}). An update whose worker died {@link MAX_SOLO_DEATHS} times while it
 * was the only one in flight leaves the journal for the dead-letter queue (poison.ts: probation).
 *
 * The in-memory index here is the truth for decisions (dedup, bounds, order); the
 * file is its durable copy, written by {@link JournalWriter} off the event loop.
 */
import type { Update } from 'node-telegram-bot-api';
import type { Logger } from 'pino';
import type { UpdateSink } from './in-flight.js';
import { MAX_SOLO_DEATHS, onWorkerDeath } from './poison.js';
import { POISON_REASON } from '../../worker/protocol.js';
import { PENDING_RETENTION_MS, type JournalOps, type PendingRow } from '../store/journal-engine.js';
import { botStats, LatencyRing, loadRows, newBotJournal, nextToSend, rememberAck, removeEntry, type BotJournal, type Entry, type JournalStats } from './journal-index.js';
import type { JournalWriter, LAZY_FLUSH_MS } from './journal-writer.js';

export type { JournalStats } from './journal-index.js';

/** What intake answers: `journaled` and `duplicate` are a 200, `full` and `failed` a 503 with Retry-After. */
export type IntakeResult = 'journaled' | 'duplicate' | 'full' | 'failed';

/** Bytes of pending updates one bot may hold in the master's memory (beyond: `full`). */
export const MAX_PENDING_BYTES_PER_BOT = 64 * 1024 * 1024;
/** Acks whose commit-to-ack time is kept for {@link Journal.deliveryLatency}. */
export const LATENCY_SAMPLES = 8192;

/** The journal as the rest of the master uses it. */
export interface Journal {
  /**
   * Intake of one valid update (the webhook server's edge checks are done). `replay`
   * (from `dlq replay`) bypasses dedup; `raw` is the update's JSON as received (else
   * it is serialized here).
   */
  accept(botId: string, update: Update, replay?: boolean, raw?: string): Promise<IntakeResult>;
  /** The bot's worker is running: deliver to it. */
  attach(botId: string, sink: UpdateSink): void;
  /** Stop sending to the bot's worker (it drains); what is in flight may still be acked. */
  pause(botId: string): void;
  /** The worker is gone: what it had in flight goes out again to the next one; after an `unexplained` death as suspects, one at a time (poison.ts). */
  workerGone(botId: string, unexplained: boolean): void;
  /** Acks from the bot's worker (either mode): pending entries leave, the ids are remembered for dedup. */
  acked(botId: string, acks: ReadonlyArray<{ updateId: number; ok: boolean }>): void;
  /** Ids acked within the dedup window, oldest first: a new polling worker skips them. */
  ackedIds(botId: string): number[];
  stats(botId: string): JournalStats;
  allStats(): Record<string, JournalStats>;
  /** As {@link allStats}, as [bot, stats] pairs (no object keyed by 1000 bot ids: a scrape reads them in order). */
  statsByBot(): Array<[string, JournalStats]>;
  /** null while the journal writes; else why its last batch failed (none has committed since): `/health` answers 503 with it. */
  writeProblem(): string | null;
  /**
   * Time from commit (Telegram's 200) to the worker's ack, over the last
   * {@link LATENCY_SAMPLES} acks of the fleet, in ms; null values before any ack.
   */
  deliveryLatency(): { samples: number; p50Ms: number | null; p99Ms: number | null; maxMs: number | null };
  /**
   * `botfleet dlq take`: move a bot's pending updates (those not in flight) to the
   * dead-letter queue, for a disabled or removed bot whose updates should not wait
   * out the 24 h. @returns how many moved
   */
  take(botId: string): number;
  /** Drop expired entries (pending past 24 h, acked ids past the dedup window). */
  expire(): void;
  close(): Promise<void>;
  /** A cluster's shared journal only (shared-journal.ts): this master now owns `botId`; resolves once its journal is read from the database. */
  own?(botId: string): Promise<void>;
  /** A cluster's shared journal only: this master no longer owns `botId` (its worker is gone): its index is dropped. */
  disown?(botId: string): void;
}

export interface JournalOptions {
  writer: JournalWriter;
  /** Rows found in the file at start. */
  loaded: { pending: PendingRow[]; acked: Array<{ bot: string; update_id: number; acked_at: number }> };
  maxPending: number;
  window: number;
  dedupWindowMs: number;
  /** Wall-clock ms (journal rows outlive this process). */
  now(): number;
  onDeadLetter(botId: string, updateId: number, update: Update, reason: string): void;
  logger: Logger;
  /** A cluster's bot epoch this master holds a bot by (null: not owned here), the fence of its acks; absent with one machine. */
  epochOf?(botId: string): number | null;
}

/** The journal with its per-bot index open to a wrapper (shared-journal.ts): the bot's index, and a pump of it. */
export type IndexedJournalParts = Journal & { bot(id: string): BotJournal; schedulePump(b: BotJournal): void };

/** Build the journal over its writer and what the file held. */
export function createJournal(o: JournalOptions): IndexedJournalParts {
  return new IndexedJournal(o);
}

/** The journal: the in-memory index per bot (journal-index.ts), its durable copy written through `o.writer`. */
class IndexedJournal implements Journal {
  private readonly bots = new Map<string, BotJournal>();
  private readonly latency = new LatencyRing(LATENCY_SAMPLES);
  /** A failed write is reported (and rate-limited) by the writer's owner (open-journal.ts); here it only must not go unhandled. */
  private readonly writeFailed = (): void => undefined;

  constructor(private readonly o: JournalOptions) {
    this.load(o.loaded);
  }

  /** The rows the file held at start (journal-index.ts's loadRows). */
  private load(loaded: JournalOptions['loaded']): void {
    loadRows(loaded, (id) => this.bot(id), (r) => this.o.logger.error({ botId: r.bot, updateId: r.update_id }, 'journal row is not JSON; dropped'));
  }

  bot(id: string): BotJournal {
    let b = this.bots.get(id);
    if (!b) this.bots.set(id, (b = newBotJournal(id)));
    return b;
  }

  schedulePump(b: BotJournal): void {
    if (b.pumpQueued || !b.sink) return;
    b.pumpQueued = true;
    queueMicrotask(() => {
      b.pumpQueued = false;
      this.pump(b);
    });
  }

  /** Send what the window allows, in order; stops at an entry not yet committed. */
  private pump(b: BotJournal): void {
    const sink = b.sink;
    if (!sink) return;
    const { batch, replays } = nextToSend(b, this.o.window);
    try {
      if (batch.length > 0) sink.send({ v: 1, type: 'update', updates: batch });
      for (const u of replays) sink.send({ v: 1, type: 'update', updates: [u], replay: true });
    } catch {
      // The worker's channel is closed: its exit calls workerGone, which sends these again.
    }
  }

  private deadLetter(b: BotJournal, id: number, e: Entry, reason: string): void {
    removeEntry(b, id, e);
    b.c.deadLettered++;
    const at = this.o.now();
    rememberAck(b, id, at);
    this.o.writer.write({ ack: [[b.id, id, at]] }).catch(this.writeFailed);
    this.o.logger.warn({ botId: b.id, updateId: id }, `update dead-lettered: ${reason}`);
    this.o.onDeadLetter(b.id, id, e.update, reason);
  }

  /** Why `update` is not taken (a duplicate, or the bot's bounds), or null to journal it. */
  private refusal(b: BotJournal, id: number, replay: boolean, bytes: number, now: number): Promise<IntakeResult> | null {
    const have = b.pending.get(id);
    if (have) {
      b.c.duplicates++;
      // Answered once the first copy is committed: a 200 before that could lose both.
      return have.committing ? have.committing.then((ok) => (ok ? 'duplicate' : 'failed')) : Promise.resolve('duplicate');
    }
    const at = replay ? undefined : b.acked.get(id);
    if (at !== undefined && now - at < this.o.dedupWindowMs) {
      b.c.duplicates++;
      return Promise.resolve('duplicate');
    }
    if (b.pending.size >= this.o.maxPending || b.pendingBytes + bytes > MAX_PENDING_BYTES_PER_BOT) {
      b.c.refused++;
      return Promise.resolve('full');
    }
    return null;
  }

  accept(botId: string, update: Update, replay = false, raw?: string): Promise<IntakeResult> {
    const b = this.bot(botId);
    const id = update.update_id;
    b.c.received++;
    // The webhook server passes the body as received; only replays (dlq replay) are serialized here.
    const payload = raw ?? JSON.stringify(update);
    const now = this.o.now();
    const refused = this.refusal(b, id, replay, payload.length, now);
    if (refused) return refused;
    const e: Entry = { update, bytes: payload.length, receivedAt: now, committedAt: now, deaths: 0, replay, committing: null };
    b.pending.set(id, e);
    b.pendingBytes += e.bytes;
    b.queue.push(id);
    if (replay) b.acked.delete(id);
    e.committing = this.o.writer.write({ insert: [[botId, id, payload, now, replay ? 1 : 0]] }).then(() => {
      e.committing = null;
      e.committedAt = this.o.now();
      b.c.journaled++;
      this.schedulePump(b);
      return true;
    }, () => {
      if (b.pending.get(id) === e) removeEntry(b, id, e);
      return false;
    });
    return e.committing.then((ok) => (ok ? 'journaled' : 'failed'));
  }

  attach(botId: string, sink: UpdateSink): void {
    const b = this.bot(botId);
    b.sink = sink;
    this.schedulePump(b);
  }

  pause(botId: string): void {
    this.bot(botId).sink = null;
  }

  workerGone(botId: string, unexplained: boolean): void {
    const b = this.bot(botId);
    b.sink = null;
    const verdict = onWorkerDeath(b.poison, [...b.inFlight].filter((id) => b.pending.has(id)), unexplained);
    const deaths: Array<[string, number, number]> = [];
    for (const [id, n] of verdict.counted) {
      const e = b.pending.get(id)!;
      e.deaths = n;
      if (n >= MAX_SOLO_DEATHS) this.deadLetter(b, id, e, POISON_REASON);
      else deaths.push([botId, id, n]);
    }
    if (deaths.length > 0) this.o.writer.write({ deaths }).catch(this.writeFailed);
    b.inFlight.clear();
    b.queue = [...b.pending.keys()];
    b.head = 0;
  }

  acked(botId: string, acks: ReadonlyArray<{ updateId: number; ok: boolean }>): void {
    const b = this.bot(botId);
    const at = this.o.now();
    const ops: JournalOps['ack'] = [];
    for (const { updateId: id, ok } of acks) {
      const e = b.pending.get(id);
      if (e) {
        if (e.committing) continue; // not ours to settle yet: the worker cannot have it
        removeEntry(b, id, e);
        this.latency.add(at - e.committedAt);
        if (ok) b.c.delivered++;
        else b.c.failed++;
      }
      b.inFlight.delete(id);
      rememberAck(b, id, at);
      ops.push(this.o.epochOf ? [botId, id, at, this.o.epochOf(botId) ?? -1] : [botId, id, at]); // -1: no epoch matches
    }
    // Lazy: an ack lost with the master only repeats its update; it rides with the next intake commit.
    if (ops.length > 0) this.o.writer.write({ ack: ops }, true).catch(this.writeFailed);
    this.schedulePump(b);
  }

  ackedIds(botId: string): number[] {
    const b = this.bots.get(botId);
    if (!b) return [];
    const since = this.o.now() - this.o.dedupWindowMs;
    return [...b.acked].filter(([, at]) => at >= since).map(([id]) => id);
  }

  take(botId: string): number {
    const b = this.bots.get(botId);
    if (!b) return 0;
    let n = 0;
    for (const [id, e] of [...b.pending]) {
      if (b.inFlight.has(id) || e.committing) continue;
      this.deadLetter(b, id, e, 'taken from the journal by an operator (dlq take)');
      n++;
    }
    return n;
  }

  stats(botId: string): JournalStats {
    return botStats(this.bot(botId), this.o.now());
  }

  writeProblem = (): string | null => {
    const p = this.o.writer.problem();
    return p === null ? null : `the journal cannot write: ${p}`;
  };

  allStats(): Record<string, JournalStats> {
    return Object.fromEntries(this.statsByBot());
  }

  statsByBot(): Array<[string, JournalStats]> {
    const now = this.o.now();
    return Array.from(this.bots.values(), (b): [string, JournalStats] => [b.id, botStats(b, now)]);
  }

  deliveryLatency(): ReturnType<Journal['deliveryLatency']> {
    return this.latency.summary();
  }

  expire(): void {
    const now = this.o.now();
    for (const b of this.bots.values()) {
      for (const [id, at] of b.acked) {
        if (now - at < this.o.dedupWindowMs) break;
        b.acked.delete(id);
      }
      for (const [id, e] of b.pending) {
        if (now - e.receivedAt < PENDING_RETENTION_MS || b.inFlight.has(id) || e.committing) continue;
        removeEntry(b, id, e);
        b.c.expired++;
      }
    }
    this.o.writer.write({ expire: { pendingBefore: now - PENDING_RETENTION_MS, ackedBefore: now - this.o.dedupWindowMs } }).catch(this.writeFailed);
  }

  close(): Promise<void> {
    return this.o.writer.close();
  }
}

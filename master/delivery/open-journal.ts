/**
 * Opening the journal at master start: read what the store holds (pending updates,
 * the durable dedup window), then hand writes to the group-commit writer.
 */
import type { Logger } from 'pino';
import type { Update } from 'node-telegram-bot-api';
import { ErrorCodes, fail } from '../../common/errors.js';
import type { JournalEngine, JournalSync, LoadedJournal } from '../store/journal-engine.js';
import type { Store } from '../store/store.js';
import { createJournalWriter } from './journal-writer.js';
import { createJournal, type Journal } from './journal.js';
import { createSharedJournal } from './shared-journal.js';

/** Settings of {@link openJournal}. Times in ms. */
export interface OpenJournalOptions {
  /** The store whose journal engine is used (SQLite: its own file; PostgreSQL: the same database). */
  store: Pick<Store, 'journalEngine' | 'where'>;
  sync: JournalSync;
  maxPending: number;
  window: number;
  dedupWindowMs: number;
  logger: Logger;
  onDeadLetter(botId: string, updateId: number, update: Update, reason: string): void;
  /** A cluster's bot epochs (the fence of each ack); absent with one machine. */
  epochOf?(botId: string): number | null;
}

/** How often expired entries are dropped. */
const EXPIRE_EVERY_MS = 60_000;

/**
 * Load the store's journal and start its writer. @returns the journal and a timer-stopping close
 * @throws BotfleetError `BF_ERR_JOURNAL` when it cannot be opened or read (one line)
 */
export async function openJournal(o: OpenJournalOptions): Promise<Journal> {
  const engine = await o.store.journalEngine(o.sync);
  let loaded: LoadedJournal = { pending: [], acked: [] };
  try {
    // Shared by a cluster: a bot's rows are read when this master takes it (shared-journal.ts).
    if (!engine.shared) loaded = await engine.load(Date.now() - o.dedupWindowMs);
  } catch (err) {
    await engine.close().catch(() => undefined);
    throw fail(ErrorCodes.JOURNAL, `the journal in ${o.store.where} cannot be read: ${(err as Error).message.split('\n')[0]}`, err);
  }
  return startJournal(engine, loaded, o);
}

/** The journal over an open engine and what it held. */
export function startJournal(engine: JournalEngine, loaded: LoadedJournal, o: Omit<OpenJournalOptions, 'store' | 'sync'>): Journal {
  let failures = 0;
  const writer = createJournalWriter(engine, {
    // One line per failing batch would flood the log during an outage: the first, then every 100th.
    onFailure: (err, retainedRows) => void (failures++ % 100 === 0 && o.logger.error({ err: err.message.split('\n')[0], failures, retainedRows }, 'journal write failed: intake answers 503, acks are kept and tried again')),
    onRecovered: (failedBatches) => {
      failures = 0;
      o.logger.info({ failedBatches }, 'journal writes again');
    },
  });
  const settings = { writer, maxPending: o.maxPending, window: o.window, dedupWindowMs: o.dedupWindowMs, now: Date.now, onDeadLetter: o.onDeadLetter, logger: o.logger, ...(o.epochOf ? { epochOf: o.epochOf } : {}) };
  const journal = engine.shared ? createSharedJournal({ ...settings, source: engine.shared }) : createJournal({ ...settings, loaded });
  if (loaded.pending.length > 0) o.logger.info({ pending: loaded.pending.length }, 'journal: updates not acked before the last stop will be delivered');
  const timer = setInterval(() => journal.expire(), EXPIRE_EVERY_MS).unref();
  const close = journal.close.bind(journal);
  journal.close = () => (clearInterval(timer), close());
  return journal;
}

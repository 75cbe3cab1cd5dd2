/**
 * Opening the journal at master start: read what the file holds (pending updates,
 * the durable dedup window), then hand writes to the writer thread.
 */
import type { Logger } from 'pino';
import type { Update } from 'node-telegram-bot-api';
import { ErrorCodes, fail } from '../../common/errors.js';
import type { JournalEngine, JournalSync, LoadedJournal } from '../store/journal-engine.js';
import { openSqliteJournal } from '../store/journal-sqlite.js';
import { createJournalWriter } from './journal-writer.js';
import { createJournal, type Journal } from './journal.js';

/** Settings of {@link openJournal}. Times in ms. */
export interface OpenJournalOptions {
  file: string;
  sync: JournalSync;
  maxPending: number;
  window: number;
  dedupWindowMs: number;
  logger: Logger;
  onDeadLetter(botId: string, updateId: number, update: Update, reason: string): void;
}

/** How often expired entries are dropped. */
const EXPIRE_EVERY_MS = 60_000;

/**
 * Load `file` and start its writer. @returns the journal and a timer-stopping close
 * @throws BotfleetError `BF_ERR_JOURNAL` when the file cannot be opened or read (one line)
 */
export async function openJournal(o: OpenJournalOptions): Promise<Journal> {
  const engine = await openSqliteJournal(o.file, o.sync);
  let loaded: LoadedJournal;
  try {
    loaded = await engine.load(Date.now() - o.dedupWindowMs);
  } catch (err) {
    await engine.close().catch(() => undefined);
    throw fail(ErrorCodes.JOURNAL, `journal ${o.file} cannot be read: ${(err as Error).message.split('\n')[0]}`, err);
  }
  return startJournal(engine, loaded, o);
}

/** The journal over an open engine and what it held. */
export function startJournal(engine: JournalEngine, loaded: LoadedJournal, o: Omit<OpenJournalOptions, 'file' | 'sync'>): Journal {
  const writer = createJournalWriter(engine);
  const journal = createJournal({ writer, loaded, maxPending: o.maxPending, window: o.window, dedupWindowMs: o.dedupWindowMs, now: Date.now, onDeadLetter: o.onDeadLetter, logger: o.logger });
  if (loaded.pending.length > 0) o.logger.info({ pending: loaded.pending.length }, 'journal: updates not acked before the last stop will be delivered');
  const timer = setInterval(() => journal.expire(), EXPIRE_EVERY_MS).unref();
  const close = journal.close.bind(journal);
  journal.close = () => (clearInterval(timer), close());
  return journal;
}

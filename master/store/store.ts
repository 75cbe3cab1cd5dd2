/**
 * The store wing's interfaces, one per concern, each with two engines: SQLite in the
 * home (the default, one machine) and PostgreSQL at DATABASE_URL (several masters). Every
 * call is asynchronous, whichever the engine: the lifecycle and delivery wings see only
 * these. Times are ms since the epoch.
 * Engines: `openSqliteStore` (here, over the registry's database) and `openPgStore` (pg/pg-store.ts).
 */
import type { Update } from 'node-telegram-bot-api';
import type { DeadLetter, DeadLetterStore, DeadLetterWithUpdate } from './dead-letters.js';
import type { Registry, StoredHistory } from './registry.js';

export type { DeadLetter, DeadLetterWithUpdate, StoredHistory };

/** Restart histories (window, quarantine) per bot, kept across master restarts. */
export interface HistoryStore {
  /** Keep `botId`'s history, replacing the one kept. */
  save(botId: string, h: StoredHistory): Promise<void>;
  /** Every kept history by bot id. */
  loadAll(): Promise<Map<string, StoredHistory>>;
}

/** The dead-letter queue (see dead-letters.ts for its rules: at most MAX_DEAD_LETTERS_PER_BOT a bot, one copy of an update). */
export interface DeadLetterQueue {
  add(botId: string, update: Update, reason: string, at: number): Promise<void>;
  /** Oldest first; one bot's, or all. */
  list(botId?: string): Promise<DeadLetter[]>;
  forReplay(sel: { id: number } | { botId: string }): Promise<DeadLetterWithUpdate[]>;
  replayFailed(id: number, result: string): Promise<void>;
  countsByBot(): Promise<Map<string, number>>;
  /** @returns how many were removed */
  remove(sel: { id: number } | { botId: string }): Promise<number>;
}

/** Small named values of the store (the bots API's ETag, the fleet's identity). */
export interface MetaStore {
  get(key: string): Promise<string | null>;
  set(key: string, value: string): Promise<void>;
}

/** One store: its engine and its concerns. */
export interface Store {
  readonly engine: 'sqlite' | 'postgres';
  readonly history: HistoryStore;
  readonly deadLetters: DeadLetterQueue;
  readonly meta: MetaStore;
  close(): Promise<void>;
}

/** Promises over a synchronous dead-letter store (a throw becomes a rejection). */
function asyncDeadLetters(d: DeadLetterStore): DeadLetterQueue {
  return {
    add: async (botId, update, reason, at) => d.add(botId, update, reason, at),
    list: async (botId) => d.list(botId),
    forReplay: async (sel) => d.forReplay(sel),
    replayFailed: async (id, result) => d.replayFailed(id, result),
    countsByBot: async () => d.countsByBot(),
    remove: async (sel) => d.remove(sel),
  };
}

/** The SQLite engine: the registry's own database in the home (today's code, behind the interfaces). */
export function openSqliteStore(registry: Registry): Store {
  return {
    engine: 'sqlite',
    history: { save: async (botId, h) => registry.saveHistory(botId, h), loadAll: async () => registry.loadHistories() },
    deadLetters: asyncDeadLetters(registry.deadLetters),
    meta: { get: async (k) => registry.meta.get(k), set: async (k, v) => registry.meta.set(k, v) },
    close: async () => registry.close(),
  };
}

/**
 * The store wing's interfaces, one per concern, each with two engines: SQLite in the
 * home (the default, one machine) and PostgreSQL at DATABASE_URL (several masters). Every
 * call is asynchronous, whichever the engine: the lifecycle and delivery wings see only
 * these. Times are ms since the epoch.
 * Engines: `openSqliteStore` (here, over the registry's database) and `openPgStore` (pg/pg-store.ts).
 */
import type { Update } from 'node-telegram-bot-api';
import type { DeadLetter, DeadLetterStore, DeadLetterWithUpdate } from './dead-letters.js';
import type { ApiBot, ApiSyncResult } from '../../config/bots-api.js';
import type { BotSpec, InvalidBot } from '../../config/bot-spec.js';
import type { BotListing, BotPatch, NewBot, Registry, StoredHistory } from './registry.js';
import type { ImportResult } from './registry-sync.js';
import type { JournalEngine, JournalSync } from './journal-engine.js';
import { openSqliteJournal } from './journal-sqlite.js';
import { ErrorCodes, fail } from '../../common/errors.js';

export type { DeadLetter, DeadLetterWithUpdate, StoredHistory };

/**
 * The bots (tokens encrypted with the home's key, never stored in the clear), their uid
 * slots, and the bots API's list. The rules are the registry's (registry.ts): one bad row
 * never hides the rest, a bot from the bots API is edited there.
 */
export interface BotRegistry {
  /** @returns its id. @throws `BF_ERR_BAD_INPUT` on a bad field or a taken id */
  add(bot: NewBot): Promise<string>;
  list(): Promise<BotListing[]>;
  /** @throws `BF_ERR_BOT_NOT_FOUND` */
  remove(id: string): Promise<void>;
  /** @throws `BF_ERR_BOT_NOT_FOUND`; `BF_ERR_BAD_INPUT` for a bot from the bots API */
  setEnabled(id: string, enabled: boolean): Promise<void>;
  /** @throws `BF_ERR_BOT_NOT_FOUND`, `BF_ERR_BAD_INPUT` */
  update(id: string, patch: BotPatch): Promise<void>;
  syncFromApi(bots: readonly ApiBot[], etag: string | null): Promise<ApiSyncResult>;
  apiEtag(): Promise<string | null>;
  /** `botfleet bots import`: add or change many bots (the bots API's document, parsed) in one transaction; nothing removed, an unchanged bot not written. */
  importBots(bots: readonly ApiBot[]): Promise<ImportResult>;
  load(): Promise<{ specs: BotSpec[]; invalid: InvalidBot[] }>;
  keyOpensAToken(): Promise<boolean>;
  /** True when the bots changed (any writer) since the last call. */
  changedSinceLastCheck(): Promise<boolean>;
  /**
   * The bots' uid slots, each allocated (max + 1, in the order given) on first use and never
   * reused; one transaction for all (1000 new bots: 112 ms of the master's loop one by one, 6.5 ms in one, SQLite).
   */
  uidSlots(botIds: readonly string[]): Promise<Map<string, number>>;
  allUidSlots(): Promise<number[]>;
}

/** Restart histories (window, quarantine) per bot, kept across master restarts. */
export interface HistoryStore {
  /**
   * Keep `botId`'s history, replacing the one kept. With `fence` (a cluster's bot epoch,
   * Kleppmann's fencing token) it is written only while the bot's owner row holds that epoch.
   * @returns false when refused as stale (another member took the bot since)
   */
  save(botId: string, h: StoredHistory, fence?: number): Promise<boolean>;
  /** Every kept history by bot id. */
  loadAll(): Promise<Map<string, StoredHistory>>;
  /** One bot's kept history (a cluster's new owner reads it when it takes the bot), or null. */
  load(botId: string): Promise<StoredHistory | null>;
}

/** The dead-letter queue (see dead-letters.ts for its rules: at most MAX_DEAD_LETTERS_PER_BOT a bot, one copy of an update). */
export interface DeadLetterQueue {
  /** With `fence` (a cluster's bot epoch) it is kept only while the bot's owner row holds that epoch. @returns false when refused as stale */
  add(botId: string, update: Update, reason: string, at: number, fence?: number): Promise<boolean>;
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

/** A member row as read: id, epoch, host and pid, ms since its last renewal (the database's clock). */
export interface MemberRow { id: string; epoch: number; host: string; pid: number; renewedAgoMs: number; joinedAt: number }

/** A bot's owner row; `member` '' when released. Epochs only grow. */
export interface BotOwnerRow { bot: string; member: string; memberEpoch: number; botEpoch: number; since: number; cause: string }

/**
 * The cluster's rows (PostgreSQL only; DESIGN.md, "The cluster"): member leases on the
 * database's clock (`now() + lease`), bot owners changed only by conditional updates. Times
 * are ms.
 */
export interface ClusterStore {
  /** A new epoch for `member` (from a sequence: it only grows) with its lease. @returns the epoch, or null while another start's lease on that id is live */
  join(member: string, host: string, pid: number, leaseMs: number): Promise<number | null>;
  /** Extend the lease of (`member`, `epoch`). @returns false when the row is not that epoch's any more (another start took the name) */
  renew(member: string, epoch: number, leaseMs: number): Promise<boolean>;
  /** Remove (`member`, `epoch`) and free its bots; NOTIFY the others. */
  leave(member: string, epoch: number): Promise<void>;
  /** Members whose lease has not expired, by id. */
  liveMembers(): Promise<MemberRow[]>;
  /** Every owner row. */
  owners(): Promise<BotOwnerRow[]>;
  /** The ids of the enabled bots. */
  enabledBots(): Promise<string[]>;
  /**
   * Take `bot` for (`member`, `epoch`) if its row is still `from` (null: no row yet): the bot
   * epoch grows by one. @returns the new bot epoch, or null when the row changed meanwhile
   */
  take(bot: string, from: { member: string; memberEpoch: number; botEpoch: number } | null, member: string, epoch: number, cause: string): Promise<number | null>;
  /** Free `bot` if (`member`, `epoch`) holds it (released: another may take it at once); NOTIFY. */
  release(bot: string, member: string, epoch: number): Promise<void>;
  /** Wake-ups when members or owners change (LISTEN; also after each reconnection). @returns stop */
  watch(onChange: () => void): () => Promise<void>;
}

/** One store: its engine and its concerns. */
export interface Store {
  readonly engine: 'sqlite' | 'postgres';
  readonly bots: BotRegistry;
  readonly history: HistoryStore;
  readonly deadLetters: DeadLetterQueue;
  readonly meta: MetaStore;
  /** The cluster's rows: PostgreSQL only (with SQLite the master is a cluster of one). */
  readonly cluster?: ClusterStore;
  /** Where it lives, for messages: a file, or `user@host:port/database` (never a password). */
  readonly where: string;
  /**
   * The journal's engine on this store: SQLite, its own file beside the registry (`sync`
   * applies); PostgreSQL, the same database (every commit is durable).
   * @throws BotfleetError `BF_ERR_JOURNAL` when it cannot be opened
   */
  journalEngine(sync: JournalSync): Promise<JournalEngine>;
  /**
   * Be woken when any writer changes the bots: PostgreSQL, LISTEN on a dedicated connection
   * that reconnects (`onChange` also runs after each reconnection: a notification may have
   * been missed meanwhile); SQLite, nothing (the registry poll alone). Polling stays the
   * truth either way (River's and Oban's practice). @returns a stop function
   */
  watchBots(onChange: () => void): () => Promise<void>;
  /** Close it (the journal's engine is closed by its writer). */
  close(): Promise<void>;
}

/** Promises over a synchronous dead-letter store (a throw becomes a rejection). */
function asyncDeadLetters(d: DeadLetterStore): DeadLetterQueue {
  return {
    add: async (botId, update, reason, at) => (d.add(botId, update, reason, at), true),
    list: async (botId) => d.list(botId),
    forReplay: async (sel) => d.forReplay(sel),
    replayFailed: async (id, result) => d.replayFailed(id, result),
    countsByBot: async () => d.countsByBot(),
    remove: async (sel) => d.remove(sel),
  };
}

/** The SQLite engine: the registry's own database in the home (today's code, behind the interfaces); the journal in `o.journalFile`. */
export function openSqliteStore(registry: Registry, o: { journalFile?: string } = {}): Store {
  const r = registry;
  return {
    engine: 'sqlite',
    where: registry.file,
    watchBots: () => async () => undefined,
    journalEngine: (sync) => (o.journalFile ? openSqliteJournal(o.journalFile, sync) : Promise.reject(fail(ErrorCodes.JOURNAL, 'this store was opened without a journal file'))),
    bots: {
      add: async (b) => r.add(b), list: async () => r.list(), remove: async (id) => r.remove(id), setEnabled: async (id, on) => r.setEnabled(id, on),
      update: async (id, p) => r.update(id, p), syncFromApi: async (b, e) => r.syncFromApi(b, e), apiEtag: async () => r.apiEtag(), load: async () => r.load(),
      keyOpensAToken: async () => r.keyOpensAToken(), changedSinceLastCheck: async () => r.changedSinceLastCheck(), uidSlots: async (ids) => r.uidSlots(ids),
      allUidSlots: async () => r.allUidSlots(), importBots: async (b) => r.importBots(b),
    },
    // One machine owns every bot: no fence to check.
    history: { save: async (botId, h) => (registry.saveHistory(botId, h), true), loadAll: async () => registry.loadHistories(), load: async (botId) => registry.loadHistories().get(botId) ?? null },
    deadLetters: asyncDeadLetters(registry.deadLetters),
    meta: { get: async (k) => registry.meta.get(k), set: async (k, v) => registry.meta.set(k, v) },
    close: async () => registry.close(),
  };
}

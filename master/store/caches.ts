/**
 * What the master needs synchronously of an asynchronous store, kept in memory:
 * - the uid slots: a fork must not wait on the database, so each bot's slot is allocated
 *   before its bots are reconciled (`ensure`), and read from here at the fork;
 * - the dead-letter counts per bot, for `/metrics` (a scrape must not wait on the database):
 *   read again after each change of the queue, at most one read at a time.
 */
import { ErrorCodes, fail } from '../../common/errors.js';
import type { Store } from './store.js';

/** Uid slots by bot id. */
export interface SlotCache {
  /** The slot of `botId`. @throws BotfleetError `BF_ERR_FORK` when it was not allocated yet (that start fails and is retried with backoff) */
  uidSlot(botId: string): number;
  /** Every slot ever allocated (as of the open, and since). */
  allSlots(): number[];
  /** Allocate (or read) the slots of `ids` not known yet. @throws the store's error */
  ensure(ids: readonly string[]): Promise<void>;
}

/** The slot cache over `store`, loaded with every slot allocated so far. */
export async function openSlotCache(store: Store): Promise<SlotCache> {
  const slots = new Map<string, number>();
  const all = new Set(await store.bots.allUidSlots());
  return {
    uidSlot(botId) {
      const s = slots.get(botId);
      if (s === undefined) throw fail(ErrorCodes.FORK, `no uid slot allocated for bot "${botId}" yet`);
      return s;
    },
    allSlots: () => [...all],
    async ensure(ids) {
      const missing = ids.filter((id) => !slots.has(id));
      if (missing.length === 0) return;
      for (const [id, s] of await store.bots.uidSlots(missing)) {
        slots.set(id, s);
        all.add(s);
      }
    },
  };
}

/** Dead letters per bot, as last read. */
export interface DeadLetterCounts {
  current(): Map<string, number>;
  /** Read them again (coalesced: a read asked for during one follows it). Never throws: a failed read keeps the last counts. */
  refresh(): void;
}

export function deadLetterCounts(store: Store): DeadLetterCounts {
  let counts = new Map<string, number>();
  let reading = false;
  let again = false;
  const refresh = (): void => {
    if (reading) {
      again = true;
      return;
    }
    reading = true;
    void store.deadLetters.countsByBot().then((c) => (counts = c), () => undefined).finally(() => {
      reading = false;
      if (again) {
        again = false;
        refresh();
      }
    });
  };
  refresh();
  return { current: () => counts, refresh };
}

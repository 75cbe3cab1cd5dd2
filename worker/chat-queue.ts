/**
 * Per-chat ordering: updates of one chat are handled one after another, in the
 * order received; different chats run concurrently. A bound on updates in
 * flight gives back-pressure to the source (long polling waits for room).
 */

/** A chat's key: its numeric chat id, or a string for updates with no chat. */
export type ChatKey = number | string;

/** The queue's contract. Depths are counts of updates. */
export interface ChatQueue<T> {
  /** Enqueue behind earlier items of the same key. */
  push(key: ChatKey, item: T): void;
  /** Items queued or running. */
  depth(): number;
  /** Resolves when fewer than `maxInFlight` items are queued or running. */
  waitForRoom(): Promise<void>;
  /** Resolves when nothing is queued or running. */
  idle(): Promise<void>;
  /**
   * Run nothing more: items not started yet are dropped (their handler never runs), those
   * running finish. For a worker whose master is gone: the journal (or Telegram, for a
   * polled update whose offset was never confirmed) gives the dropped ones to the next worker.
   */
  abandon(): void;
}

/**
 * @param handle runs one item; its rejection is the caller's to catch (the queue
 *   goes on with the next item of that key either way).
 * @param maxInFlight back-pressure bound for {@link ChatQueue.waitForRoom}
 */
export function createChatQueue<T>(handle: (item: T) => Promise<void>, maxInFlight: number): ChatQueue<T> {
  const tails = new Map<ChatKey, Promise<void>>();
  let depth = 0;
  let waiters: Array<() => void> = [];
  let abandoned = false;
  const handleUnlessAbandoned = (item: T): Promise<void> | undefined => (abandoned ? undefined : handle(item));

  const wake = () => {
    if (waiters.length === 0) return; // the common case: settle runs per item, allocate nothing
    const ready = waiters;
    waiters = [];
    for (const w of ready) w();
  };

  return {
    push(key, item) {
      depth++;
      const prev = tails.get(key);
      // An idle chat runs at once; a busy one waits behind its tail. One promise per item either way.
      const run = prev ? prev.then(() => handleUnlessAbandoned(item)) : Promise.resolve(handleUnlessAbandoned(item));
      const next: Promise<void> = run.then(settle, settle);
      function settle(): void {
        depth--;
        if (tails.get(key) === next) tails.delete(key);
        wake();
      }
      tails.set(key, next);
    },
    depth: () => depth,
    async waitForRoom() {
      while (depth >= maxInFlight) await new Promise<void>((r) => waiters.push(r));
    },
    async idle() {
      while (depth > 0) await new Promise<void>((r) => waiters.push(r));
    },
    abandon: () => void (abandoned = true),
  };
}

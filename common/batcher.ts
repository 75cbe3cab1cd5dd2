/**
 * Coalesces items pushed during one event-loop turn into one call of `flush`,
 * run at the end of that turn (setImmediate, after the I/O callbacks that pushed
 * them). Used on both sides of the IPC channel: every message is a syscall and a
 * wake-up of the peer process, measured as half the master's CPU under webhook
 * load when updates and acks travelled one per message.
 */
export interface Batcher<T> {
  push(item: T): void;
  /** Flush now (before exiting, or when order with another message matters). */
  flushNow(): void;
  pending(): number;
}

export function createBatcher<T>(flush: (items: T[]) => void): Batcher<T> {
  let items: T[] = [];
  let scheduled: NodeJS.Immediate | null = null;
  const run = () => {
    scheduled = null;
    if (items.length === 0) return;
    const batch = items;
    items = [];
    flush(batch);
  };
  return {
    push(item) {
      items.push(item);
      scheduled ??= setImmediate(run);
    },
    flushNow() {
      if (scheduled) clearImmediate(scheduled);
      run();
    },
    pending: () => items.length,
  };
}

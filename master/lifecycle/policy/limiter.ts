/**
 * A counting semaphore: at most `n` holders at once, FIFO. Used to fork children
 * with bounded concurrency (forking 100 at once stalls the master's event loop
 * for seconds; near the core count keeps it free, DESIGN.md).
 */
export interface Limiter {
  /** Wait for a slot; the returned function releases it (idempotent). */
  acquire(): Promise<() => void>;
  active(): number;
  waiting(): number;
}

export function createLimiter(n: number): Limiter {
  let active = 0;
  const queue: Array<() => void> = [];
  const release = () => {
    active--;
    const next = queue.shift();
    if (next) {
      active++;
      next();
    }
  };
  return {
    acquire() {
      return new Promise((resolve) => {
        const grant = () => {
          let done = false;
          resolve(() => {
            if (!done) {
              done = true;
              release();
            }
          });
        };
        if (active < n) {
          active++;
          grant();
        } else queue.push(grant);
      });
    },
    active: () => active,
    waiting: () => queue.length,
  };
}

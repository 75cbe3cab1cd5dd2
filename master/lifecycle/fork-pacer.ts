/**
 * Forks one at a time, one per event-loop turn. fork() blocks the master for
 * ~10-25 ms; when several start slots open in the same tick, forking them back to
 * back would stall the loop for their sum (heartbeats, webhook calls and status
 * requests wait). Between two paced forks the loop polls I/O once.
 */
export interface ForkPacer {
  /** Run `fn` in its own turn, after every earlier one. */
  run<T>(fn: () => T): Promise<T>;
}

export function createForkPacer(): ForkPacer {
  const queue: Array<() => void> = [];
  let scheduled = false;
  const next = () => {
    scheduled = false;
    queue.shift()?.();
    if (queue.length > 0) schedule();
  };
  // setImmediate queued from a check-phase callback runs in the next loop turn, after I/O polling.
  const schedule = () => {
    if (!scheduled) {
      scheduled = true;
      setImmediate(next);
    }
  };
  return {
    run(fn) {
      return new Promise((resolve, reject) => {
        queue.push(() => {
          try {
            resolve(fn());
          } catch (err) {
            reject(err);
          }
        });
        schedule();
      });
    },
  };
}

/** Waiting on conditions with a deadline: every wait fails with a message saying what did not happen. */
import { setTimeout as sleep } from 'node:timers/promises';

/** Poll `check` every `everyMs` until it returns a truthy value; throw `what did not happen` after `ms`. */
export async function waitFor<T>(check: () => T | Promise<T>, ms: number, what: string, everyMs = 50): Promise<NonNullable<T>> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${ms} ms${last ? ` (last error: ${(last as Error).message})` : ''}`);
    await sleep(everyMs);
  }
}

/** True when a process with `pid` exists (zombies count as gone). */
export { processAlive as alive } from '../../master/host/pid-file.js';

/**
 * The cluster's deadline inside a worker (DESIGN.md, "Self-fence"): the master hands over
 * its lease's renew deadline (machine monotonic ms, common/mono.ts) at init and at every
 * renewal. Past it this worker polls no more, even when its master is paused or cut off from
 * the database, and each long poll's `timeout` ends before it: a new owner can never find a
 * poll of this worker still open. Without a cluster there is no deadline.
 */
import { machineMonoMs } from '../common/mono.js';

/** Room kept between a long poll's end at Telegram and the deadline, ms (the new owner waits at least CLUSTER_LEASE_MS - CLUSTER_RENEW_DEADLINE_MS more). */
export const LEASE_MARGIN_MS = 250;

/** The deadline and its wake-ups. */
export interface LeaseGate {
  /**
   * A new deadline (machine monotonic ms); null: none (no cluster). While held ({@link hold}),
   * only a `confirmed` one (sent after the master's re-check of who owns the bot) releases it.
   */
  set(untilMs: number | null, confirmed?: boolean): void;
  /** After a 409: no call until the master has re-checked that this worker's bot is still its own (a confirmed renewal). */
  hold(): void;
  /** Whole seconds a long poll may wait now, at most `maxSec`; below 1: the worker must not poll. */
  pollSeconds(maxSec: number): number;
  /** Whether a call to Telegram may still be made (the deadline is more than the margin away, or there is none). */
  live(): boolean;
  /** Ms left for calls to Telegram: until the margin before the deadline (Infinity without one, 0 when held or past it). */
  msLeft(): number;
  /** Resolves when a later deadline arrives or `signal` aborts. */
  renewed(signal: AbortSignal): Promise<void>;
}

/** A gate starting at `untilMs` (null: open); `now` is the machine's monotonic clock. */
export function createLeaseGate(untilMs: number | null, now: () => number = machineMonoMs): LeaseGate {
  let until = untilMs;
  let held = false;
  let waiters: Array<() => void> = [];
  const gate: LeaseGate = {
    set(u, confirmed = false) {
      until = u;
      if (held && !confirmed) return;
      held = false;
      const w = waiters;
      waiters = [];
      for (const f of w) f();
    },
    hold: () => void (held = true),
    live: () => gate.msLeft() > 0,
    msLeft: () => (held ? 0 : until === null ? Infinity : Math.max(0, until - now() - LEASE_MARGIN_MS)),
    pollSeconds: (maxSec) => Math.min(maxSec, Math.floor(gate.msLeft() / 1000)),
    renewed(signal) {
      return new Promise<void>((resolve) => {
        if (signal.aborted) return resolve();
        const done = () => {
          signal.removeEventListener('abort', done);
          resolve();
        };
        signal.addEventListener('abort', done);
        waiters.push(done);
      });
    },
  };
  return gate;
}

/**
 * Time as the lifecycle sees it: a monotonic `now()` (ms) and timers, injected so
 * tests can run the supervisor on a fake clock and assert exact deadlines and
 * delays (suture's practice). The real clock is `performance.now()` and Node's timers.
 */

/** A timer handle; only the clock that made it can clear it. */
export type Timer = { unref?(): unknown };

/** The clock's contract. Times in ms. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): Timer;
  clearTimeout(t: Timer | null | undefined): void;
  setInterval(fn: () => void, ms: number): Timer;
  clearInterval(t: Timer | null | undefined): void;
}

/** performance.now() and Node's timers (unref'd intervals do not keep the process alive). */
export const realClock: Clock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (t) => clearTimeout(t as NodeJS.Timeout | undefined),
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearInterval: (t) => clearInterval(t as NodeJS.Timeout | undefined),
};

/** A clock that moves only when told: `advance(ms)` runs every timer due, in order, each at its own time. */
export interface FakeClock extends Clock {
  advance(ms: number): void;
  /** Timers scheduled and not yet run or cleared. */
  pending(): number;
}

/** A fake clock starting at `start` ms. */
export function createFakeClock(start = 0): FakeClock {
  let t = start;
  let seq = 0;
  const timers = new Map<number, { at: number; every: number | null; fn: () => void; seq: number }>();
  const handle = (id: number): Timer => ({ id, unref: () => undefined }) as Timer;
  const idOf = (h: Timer | null | undefined) => (h as { id?: number } | null | undefined)?.id;
  const add = (fn: () => void, ms: number, every: number | null) => {
    const id = ++seq;
    timers.set(id, { at: t + Math.max(0, ms), every, fn, seq: id });
    return handle(id);
  };
  return {
    now: () => t,
    setTimeout: (fn, ms) => add(fn, ms, null),
    setInterval: (fn, ms) => add(fn, ms, Math.max(1, ms)),
    clearTimeout: (h) => void timers.delete(idOf(h) ?? -1),
    clearInterval: (h) => void timers.delete(idOf(h) ?? -1),
    advance(ms) {
      const until = t + ms;
      for (;;) {
        let next: [number, { at: number; every: number | null; fn: () => void; seq: number }] | null = null;
        for (const e of timers) if (e[1].at <= until && (!next || e[1].at < next[1].at || (e[1].at === next[1].at && e[1].seq < next[1].seq))) next = e;
        if (!next) break;
        const [id, timer] = next;
        t = timer.at;
        if (timer.every === null) timers.delete(id);
        else timer.at += timer.every;
        timer.fn();
      }
      t = until;
    },
    pending: () => timers.size,
  };
}

/**
 * The worker's heartbeat. A webhook worker beats every HEARTBEAT_INTERVAL_MS. A
 * long-polling worker's beats ride on its long poll: it beats when a getUpdates returns
 * (once HEARTBEAT_INTERVAL_MS have passed since the last beat), and its timer, re-armed at
 * every beat, only covers a poll that does not come back: an idle polling bot then wakes
 * as often as a bare bot, four times a minute by strace (each poll's return, and the stale
 * deadline timer of the poll before; with a 15 s heartbeat timer it woke twice as often:
 * ~1.45x a bare bot's idle CPU at 1000 bots, bench: scale). Ride only when the
 * longest gap (the poll's client deadline) keeps a quarter of HEARTBEAT_TIMEOUT_MS free,
 * else the timer alone, as before. Like systemd's watchdog, the worker is told the
 * master's deadline (`WATCHDOG_USEC`) and paces itself under it.
 */

/**
 * The timer's period (ms): `intervalMs`, or for a long-polling worker the longest a poll can
 * take (`pollWindowMs`: its server wait plus the client margin) when that is longer and at most
 * 3/4 of `timeoutMs` (the master's hung deadline; unknown: no ride).
 */
export function heartbeatPeriodMs(o: { intervalMs: number; timeoutMs?: number; pollWindowMs: number | null }): number {
  if (o.pollWindowMs === null || o.timeoutMs === undefined) return o.intervalMs;
  const ride = Math.max(o.intervalMs, o.pollWindowMs);
  return ride * 4 <= o.timeoutMs * 3 ? ride : o.intervalMs;
}

/** A started heartbeat. */
export interface Heartbeat {
  /** A getUpdates returned (with updates, empty, or failed): beat when the interval has passed. */
  pollReturned(): void;
  /** The worker did something the counters show (an ack, a dead letter): the next beat within the interval of the last. */
  activity(): void;
}

/**
 * Beat now, then after `periodMs` of silence, at a poll's return once `intervalMs` passed
 * since the last beat, and `intervalMs` after the last beat once there was activity: the
 * counters reach the master as promptly as with a plain interval timer, and an idle bot is
 * not woken for them. Times in ms from `now`; `setTimer`/`clearTimer` as Node's.
 */
export function startHeartbeat<T>(o: { beat(): void; intervalMs: number; periodMs: number; now(): number; setTimer(fn: () => void, ms: number): T; clearTimer(t: T): void }): Heartbeat {
  let lastAt = 0;
  let timer: T | null = null;
  let due = Number.POSITIVE_INFINITY;
  const arm = (at: number) => {
    if (timer !== null) o.clearTimer(timer);
    due = at;
    timer = o.setTimer(beat, Math.max(0, at - o.now()));
  };
  function beat(): void {
    o.beat();
    lastAt = o.now();
    arm(lastAt + o.periodMs);
  }
  beat();
  return {
    pollReturned() {
      if (o.now() - lastAt >= o.intervalMs) beat();
    },
    activity() {
      if (lastAt + o.intervalMs < due) arm(lastAt + o.intervalMs);
    },
  };
}

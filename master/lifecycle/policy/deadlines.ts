/**
 * Deadline decisions, pure (times in ms on one clock):
 * - heartbeat: a running child is hung when its last heartbeat is older than the
 *   timeout (systemd's WatchdogSec, told to the worker in `init` like WATCHDOG_USEC);
 * - startup: a starting child that has not said `ready` within the startup timeout.
 */

/** True when a child last heard from at `lastHeartbeatAt` has missed its deadline at `now`. */
export function heartbeatOverdue(lastHeartbeatAt: number | null, now: number, timeoutMs: number): boolean {
  return lastHeartbeatAt !== null && now - lastHeartbeatAt > timeoutMs;
}

/** True when a child forked at `startedAt` still has not said ready at `now`. */
export function startupOverdue(startedAt: number | null, now: number, timeoutMs: number): boolean {
  return startedAt !== null && now - startedAt > timeoutMs;
}

/** How often one shared timer checks heartbeats: a quarter of the timeout, between 10 ms and 1 s. */
export function heartbeatCheckEveryMs(timeoutMs: number): number {
  return Math.min(1000, Math.max(10, Math.floor(timeoutMs / 4)));
}

/**
 * True when a check meant to run every `everyMs` ran `gapMs` after the previous one,
 * late enough that heartbeats may have waited unread in their pipes: more than twice
 * its period and more than a quarter of the heartbeat timeout. The master was not
 * running (SIGSTOP, a suspended VM, a long stall): deadlines are renewed, not judged.
 */
export function masterWasPaused(gapMs: number, everyMs: number, heartbeatTimeoutMs: number): boolean {
  return gapMs > 2 * everyMs && gapMs > heartbeatTimeoutMs / 4;
}

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

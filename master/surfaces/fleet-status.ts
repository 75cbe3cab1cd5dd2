/**
 * The fleet status, the body of `GET /api/workers/status` and of the control socket's
 * `status` (DESIGN.md's shape): its type and how it is built from the supervisor's rows.
 * Apart from the server so the status page and the server both import it, not each other.
 */
import type { WorkerStatus } from '../lifecycle/child.js';
import type { IsolationStatus } from '../host/isolation.js';

/** `GET /api/workers/status` body. Times in ms, memory in bytes. */
export interface FleetStatus {
  /** `workerSchedPolicy`: the policy children actually run under (`other` when `batch` was asked for but chrt cannot run). */
  master: { pid: number; uptimeMs: number; mode: string; version: string; capacity: number; workerSchedPolicy: 'batch' | 'other'; isolation: IsolationStatus };
  workers: WorkerStatus[];
  totals: { byState: Record<string, number>; messages: number; errors: number };
}

/** Build the fleet status from the supervisor's rows. */
export function fleetStatus(workers: WorkerStatus[], master: FleetStatus['master']): FleetStatus {
  const byState: Record<string, number> = {};
  let messages = 0;
  let errors = 0;
  for (const w of workers) {
    byState[w.state] = (byState[w.state] ?? 0) + 1;
    messages += w.messages;
    errors += w.errors;
  }
  return { master, workers, totals: { byState, messages, errors } };
}


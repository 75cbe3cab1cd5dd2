/**
 * What a worker tells the master (worker/protocol.ts, parsed by bounded code before this),
 * turned into events: `ready` and its fatal `error` go to the machine, a heartbeat to the
 * child's counters, begin/ack/dlq straight to the delivery wing (delivery/worker-channel.ts).
 * A frame that breaks the protocol, or a flood of `begin`, is a `protocol-violation` event.
 */
import { assertNever } from '../../common/errors.js';
import { FATAL_CODES, parseWorkerMessage } from '../../worker/protocol.js';
import type { Child } from './child.js';
import type { WorkerProcess } from './child-process.js';
import { isDeliveryFrame, onDeliveryFrame } from '../delivery/worker-channel.js';
import type { Dispatcher } from './dispatcher.js';
import { addBeat } from './counters.js';

/** Unknown message types logged per child (the rest are dropped quietly). */
const UNKNOWN_LOGGED = 10;

/** Handle one message of `proc` (ignored once `proc` is no longer `c`'s process). */
export function onWorkerMessage(core: Dispatcher, c: Child, proc: WorkerProcess, raw: unknown): void {
  if (c.proc !== proc) return;
  const violation = (detail: string) => core.dispatch(c, { type: 'protocol-violation', pid: proc.pid, detail });
  const m = parseWorkerMessage(raw);
  if (m === null) return violation('a message that breaks the protocol');
  if (m.type === 'unknown') {
    if (c.unknownMessages++ < UNKNOWN_LOGGED) core.logger.warn({ botId: c.botId, type: m.name }, 'unknown IPC message dropped');
    return;
  }
  if (isDeliveryFrame(m)) {
    const refused = onDeliveryFrame(c.delivery, c.botId, m, core.channelSinks);
    if (refused) violation(refused);
    return;
  }
  switch (m.type) {
    case 'ready':
      c.lastHeartbeatAt = core.now();
      return core.dispatch(c, { type: 'ready', pid: proc.pid });
    case 'heartbeat':
      if ('same' in m) return void (c.lastHeartbeatAt = core.now());
      addBeat(c.totals, c.lastBeat, m);
      c.lastBeat = { messages: m.messages, errors: m.errors, ...(m.telemetry ? { telemetry: m.telemetry } : {}) };
      Object.assign(c, { lastHeartbeatAt: core.now(), messages: m.messages, errors: m.errors, queueDepth: m.queueDepth, rssBytes: c.cpuPercent === null ? m.rssBytes : c.rssBytes, lastError: m.lastError, username: m.username });
      return;
    case 'error':
      core.logger.error({ botId: c.botId, reason: m.reason, code: FATAL_CODES[m.reason], err: m.message }, 'worker reported a fatal error');
      return core.dispatch(c, { type: 'worker-error', pid: proc.pid, message: m.message, code: FATAL_CODES[m.reason] });
    case 'conflict':
      return recheckOwner(core, c, proc);
    default:
      assertNever(m); // a new message type must be handled here, or this does not compile
  }
}

/**
 * A worker's 409 Conflict (another poller of its token): the cluster looks again at who owns
 * the bot; still this master's, the worker is sent a confirmed lease and polls again; another
 * member's, ownership-lost stops it. Without a cluster the worker never sends one.
 */
function recheckOwner(core: Dispatcher, c: Child, proc: WorkerProcess): void {
  const recheck = core.d.recheckOwner;
  if (!recheck) return;
  core.logger.warn({ botId: c.botId }, 'the worker got 409 Conflict from getUpdates: re-checking who owns the bot');
  void recheck(c.botId).then((mine) => {
    if (!mine || c.proc !== proc) return;
    try {
      proc.send({ v: 1, type: 'lease', until: core.d.leaseUntil?.() ?? 0, confirmed: true });
    } catch {
      // its channel is closed: its exit is on the way
    }
  }, () => undefined);
}

/**
 * What a worker tells the master (worker/protocol.ts, parsed by bounded code before this):
 * ready, heartbeat, begin/ack of updates, a dead-lettered update, its fatal error. A frame
 * that breaks the protocol, or a flood of `begin`, kills the worker with reason `protocol`.
 */
import { assertNever } from '../../common/errors.js';
import { FATAL_CODES, parseWorkerMessage } from '../../worker/protocol.js';
import type { Child } from './child.js';
import type { WorkerProcess } from './child-process.js';
import { deadLetterRefusal, onAck, onBegin, onWorkerDeadLetter } from '../delivery/outbox.js';
import type { SupervisorCore } from './supervisor-core.js';
import { addBeat } from './counters.js';

/**
 * Begun-not-acked updates tracked per polling worker before a flood of `begin` is a protocol
 * violation: a worker holds at most 64 updates in flight plus one getUpdates batch (100).
 */
export const MAX_TRACKED_IN_FLIGHT = 4096;
/** Unknown message types logged per child (the rest are dropped quietly). */
const UNKNOWN_LOGGED = 10;

/** Handle one message of `proc` (ignored once `proc` is no longer `c`'s process). */
export function onWorkerMessage(core: SupervisorCore, c: Child, proc: WorkerProcess, raw: unknown): void {
  if (c.proc !== proc) return;
  const m = parseWorkerMessage(raw);
  if (m === null) return core.protocolViolation(c, proc, 'a message that breaks the protocol');
  if (m.type === 'unknown') {
    if (c.unknownMessages++ < UNKNOWN_LOGGED) core.logger.warn({ botId: c.botId, type: m.name }, 'unknown IPC message dropped');
    return;
  }
  const { d, now } = core;
  switch (m.type) {
    case 'ready':
      core.clearTimer(c);
      c.releaseSlot?.();
      c.releaseSlot = null;
      c.lastHeartbeatAt = now();
      if (c.state === 'starting') core.transition(c, 'running', null);
      return;
    case 'heartbeat':
      addBeat(c.totals, c.lastBeat, m);
      c.lastBeat = { messages: m.messages, errors: m.errors, ...(m.telemetry ? { telemetry: m.telemetry } : {}) };
      Object.assign(c, { lastHeartbeatAt: now(), messages: m.messages, errors: m.errors, queueDepth: m.queueDepth, rssBytes: c.cpuPercent === null ? m.rssBytes : c.rssBytes, lastError: m.lastError, username: m.username });
      return;
    case 'begin': {
      let begun = 0;
      for (const id of m.updateIds) begun = onBegin(c.delivery, id);
      if (begun > MAX_TRACKED_IN_FLIGHT) core.protocolViolation(c, proc, `over ${MAX_TRACKED_IN_FLIGHT} updates begun and not acked`);
      return;
    }
    case 'ack':
      for (const a of m.acks) onAck(c.delivery, a.updateId);
      d.journal?.acked(c.botId, m.acks);
      return;
    case 'dlq': {
      const refused = deadLetterRefusal(c.delivery, m.updateId, now());
      if (refused) return core.protocolViolation(c, proc, refused);
      onWorkerDeadLetter(c.delivery, m.updateId);
      d.journal?.acked(c.botId, [{ updateId: m.updateId, ok: false }]);
      core.logger.warn({ botId: c.botId, updateId: m.updateId, err: m.error }, 'update dead-lettered');
      d.onDeadLetter?.(c.botId, m.updateId, m.update ?? null, m.error);
      return;
    }
    case 'error':
      c.fatalMessage = m.message;
      c.fatalCode = FATAL_CODES[m.reason];
      core.logger.error({ botId: c.botId, reason: m.reason, code: c.fatalCode, err: m.message }, 'worker reported a fatal error');
      return;
    default:
      assertNever(m); // a new message type must be handled here, or this does not compile
  }
}

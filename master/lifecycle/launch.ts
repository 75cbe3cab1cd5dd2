/**
 * Launching a child: Telegram's side first (setWebhook/deleteWebhook, shown as `pending`),
 * then a fork slot (START_CONCURRENCY, paced), the fork, and the `init` message.
 * `starting` means forked; `running` comes with the worker's `ready` (worker-messages.ts).
 */
import { BotfleetError, ErrorCodes, errorMessage } from '../../common/errors.js';
import { botApiPolicy } from '../../worker/protocol.js';
import type { Child } from './child.js';
import type { BotSpec } from './child-spec.js';
import { forkFailureMessage, forkWorker, type WorkerProcess } from './child-process.js';
import { createChildLog } from '../host/child-log.js';
import { onWorkerStart, poisonIds, probationIds } from '../delivery/outbox.js';
import { prepareDelivery } from './telegram-admin.js';
import type { SupervisorCore } from './supervisor-core.js';
import { onWorkerMessage } from './worker-messages.js';

/**
 * Bring `c` up for `why`, unless it has a process, a launch under way, no spec, or the
 * master is stopping. Over capacity it waits in `pending`. Never throws: a failed
 * preparation or fork is a fault of this bot (backoff, quota, quarantine), never the master's end.
 */
export async function launchChild(core: SupervisorCore, c: Child, why: string): Promise<void> {
  if (c.proc || c.launching || core.shuttingDown || !c.spec) return;
  core.clearTimer(c);
  if (!core.holdsSlot(c) && core.used() >= core.cap) {
    if (c.state !== 'pending') core.transition(c, 'pending', `over capacity (${core.cap} workers)`);
    return;
  }
  c.launching = true;
  const abandoned = () => c.intent !== 'run' || core.shuttingDown || !c.spec;
  // Telegram-side preparation is I/O, not CPU: done before taking a fork slot so it overlaps other forks.
  if (!abandoned() && c.prepareDelivery && !(await prepareInTurn(core, c, why))) return;
  if (c.state !== 'starting') core.transition(c, 'starting', why);
  const release = await core.limiter.acquire();
  try {
    await core.pacer.run(() => {
      if (abandoned()) {
        release();
        c.launching = false;
        return core.transition(c, 'stopped', c.stateReason);
      }
      spawn(core, c, c.spec!, release);
    });
  } catch (err) {
    // EMFILE, EAGAIN, ENOMEM, a bad uid: a failed start of this bot (backoff), never the master's end.
    release();
    c.launching = false;
    if (err instanceof BotfleetError && (err.code === ErrorCodes.HANDLER_LOAD || err.code === ErrorCodes.ISOLATION)) {
      // The bot's configuration, not the host (a handler missing or closed to the bot's uid, children without uids):
      // no restart can fix it, so it is quarantined until an operator does, as a worker's exit 78 would be (DESIGN.md).
      core.logger.error({ botId: c.botId, code: err.code, err: err.message }, 'bot cannot start as configured: quarantined until it is fixed');
      return core.afterFault(c, 'config', err.message);
    }
    const why = await forkFailureMessage(err);
    core.logger.error({ botId: c.botId, err: why }, 'fork failed');
    core.afterFault(c, 'crash', why.startsWith('fork failed') ? why : `fork failed: ${why}`);
  } finally {
    c.launching = false;
  }
}

/** Telegram's side, shown as `pending` (waiting its turn), PREPARE_CONCURRENCY at a time. @returns false when the child went elsewhere. */
async function prepareInTurn(core: SupervisorCore, c: Child, why: string): Promise<boolean> {
  if (c.state !== 'pending') core.transition(c, 'pending', `preparing Telegram's side (${why})`);
  const done = await core.preparing.acquire();
  try {
    return await prepare(core, c);
  } catch (err) {
    c.launching = false;
    core.afterFault(c, 'crash', errorMessage(err));
    return false;
  } finally {
    done();
  }
}

/** Align Telegram with the bot's mode. @returns false when the child went to backoff/quarantine instead. */
async function prepare(core: SupervisorCore, c: Child): Promise<boolean> {
  const { cfg } = core;
  const spec = c.spec!;
  const wanted = spec.mode ?? cfg.mode;
  const mode = wanted === 'auto' ? (cfg.webhookHost ? 'webhook' : 'polling') : wanted;
  const r = await prepareDelivery(core.deliveryRequest(c, spec, mode));
  if (!r.ok) {
    c.launching = false;
    if (r.tokenRejected) {
      // As a worker's exit 78: quarantined until fixed, no budget spent, kept across a master restart (DESIGN.md).
      core.logger.error({ botId: c.botId, code: ErrorCodes.BAD_TOKEN, err: r.message }, 'token rejected: quarantined until it is fixed');
      core.afterFault(c, 'config', r.message);
    } else core.afterFault(c, 'crash', r.message);
    return false;
  }
  c.mode = r.mode;
  c.note = r.note;
  if (r.note) core.logger.warn({ botId: c.botId, note: r.note }, 'delivery prepared with a note');
  c.prepareDelivery = false;
  return true;
}

/** Fork the worker, send `init`, and arm the startup deadline (STARTUP_TIMEOUT_MS). */
function spawn(core: SupervisorCore, c: Child, spec: BotSpec, release: () => void): void {
  const { cfg, d, now } = core;
  c.log ??= createChildLog(d.logsDir, c.botId, { maxBytes: cfg.logMaxBytes, keep: cfg.logKeepFiles, bytesPerSec: cfg.workerLogBytesPerSec, now, echo: d.echoWorkerLine });
  const log = c.log;
  let violation: string | null = null;
  const isolation = d.isolationFor?.(c.botId, spec);
  c.uid = isolation?.uid ?? null;
  const proc: WorkerProcess = (d.fork ?? forkWorker)({
    maxOldSpaceMb: cfg.maxMemoryPerWorkerMb,
    logLevel: cfg.logLevel,
    schedPolicy: cfg.workerSchedPolicy,
    now,
    isolation,
    onOutput: (line, stream, truncated) => log.line(line, stream, proc?.pid ?? 0, spec.token, truncated),
    onMessage: (m) => onWorkerMessage(core, c, proc, m),
    // A violation can be found while fork() is still returning: remembered, acted on below.
    onViolation: (why) => (proc ? core.protocolViolation(c, proc, why) : (violation = why)),
  });
  Object.assign(c, { proc, startedAt: now(), lastHeartbeatAt: null, endReason: null, fatalMessage: null, fatalCode: null, lastBeat: null, releaseSlot: release, rssBytes: 0, cpuPercent: null, queueDepth: 0 });
  core.reportPids();
  void proc.exited.then((info) => core.onExit(c, proc, info));
  const skip = poisonIds(c.delivery);
  onWorkerStart(c.delivery, skip);
  proc.send({
    v: 1, type: 'init', home: cfg.home, heartbeatIntervalMs: cfg.heartbeatIntervalMs, drainTimeoutMs: cfg.workerTimeoutMs,
    pollingTimeoutSec: cfg.pollingTimeoutSec, dedupWindowMs: cfg.dedupWindowMs,
    skipUpdateIds: skip, probationUpdateIds: probationIds(c.delivery), ackedUpdateIds: d.journal?.ackedIds(c.botId) ?? [],
    bot: { id: c.botId, name: spec.name, token: spec.token, apiRoot: spec.apiRoot ?? cfg.telegramApiRoot, mode: c.mode!, handler: spec.handler, settings: spec.settings,
      api: botApiPolicy({ maxRetries: cfg.apiMaxRetries, retryBackoffMs: cfg.apiRetryBackoffMs, rateLimitGlobal: cfg.rateLimitGlobal, rateLimitPerChat: cfg.rateLimitPerChat }, spec.settings) },
  });
  // Deferred by one setImmediate: after a pause of the master, expired timers run before
  // pending pipe data is read, and a `ready` already sent must be seen first.
  c.timer = core.clock.setTimeout(() => setImmediate(() => c.proc === proc && c.state === 'starting' && core.kill(c, 'startup-timeout')), cfg.startupTimeoutMs);
  core.logger.info({ botId: c.botId, workerPid: proc.pid, mode: c.mode }, 'worker forked');
  if (violation) core.protocolViolation(c, proc, violation);
}

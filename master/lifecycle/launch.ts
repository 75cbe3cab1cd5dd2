/**
 * The I/O of a launch, behind the dispatcher's `prepare` and `fork` effects: Telegram's
 * side (setWebhook/deleteWebhook, PREPARE_CONCURRENCY at a time), then a fork slot
 * (START_CONCURRENCY, paced), the fork and the `init` message. Each outcome goes back to
 * the machine as an event (prepared, prepare failed, forked, fork failed, exit); nothing
 * here decides a state. A worker's frames go to the delivery wing (begin, ack, dlq) or
 * back to the machine (ready, error, a violation).
 */
import { BotfleetError, ErrorCodes, errorMessage } from '../../common/errors.js';
import { botApiPolicy } from '../../worker/protocol.js';
import type { Child } from './child.js';
import type { BotSpec } from '../../config/bot-spec.js';
import { forkFailureMessage, forkWorker, type WorkerProcess } from './child-process.js';
import { createChildLog } from '../host/child-log.js';
import { onWorkerStart, poisonIds, probationIds } from '../delivery/in-flight.js';
import { prepareDelivery, type AdminResult, type DeliveryRequest } from './telegram-admin.js';
import type { Dispatcher, Launcher } from './dispatcher.js';
import { onWorkerMessage } from './worker-messages.js';

/** Telegram's side of a launch (telegram-admin.ts; a fake in tests). */
export type PrepareTelegram = (r: DeliveryRequest) => Promise<AdminResult>;

/** The launcher of one dispatcher. `telegram` defaults to the real Bot API calls. */
export function createLauncher(core: Dispatcher, telegram: PrepareTelegram = prepareDelivery): Launcher {
  const current = (c: Child, tag: 'preparing' | 'forking', attempt: number) => c.life.phase.tag === tag && c.life.phase.attempt === attempt && c.spec !== null;
  return {
    async prepare(c, attempt) {
      const done = await core.preparing.acquire();
      try {
        if (!current(c, 'preparing', attempt)) return;
        const r = await prepare(core, c, c.spec!, telegram);
        core.dispatch(c, r.ok ? { type: 'prepared', attempt, mode: r.mode, note: r.note } : { type: 'prepare-failed', attempt, message: r.message, tokenRejected: r.tokenRejected });
      } finally {
        done();
      }
    },
    async fork(c, attempt) {
      const release = await core.limiter.acquire();
      await core.pacer.run(async () => {
        if (!current(c, 'forking', attempt)) return release();
        try {
          const { proc, early } = await underWay(core, c, spawn(core, c, c.spec!));
          if (!current(c, 'forking', attempt)) {
            // A stop while the fork was under way: the step kills the worker of the stale attempt.
            release();
            core.dispatch(c, { type: 'forked', attempt, pid: proc.pid }, proc);
            return void underWay(core, c, proc.exited);
          }
          core.forkSlots.set(c, release);
          core.dispatch(c, { type: 'forked', attempt, pid: proc.pid }, proc);
          start(core, c, proc, early());
        } catch (err) {
          release();
          core.dispatch(c, await forkFailed(core, c, attempt, err));
        }
      });
    },
  };
}

/** `p`, kept in `core.underWay` for `c` until it settles. */
function underWay<T>(core: Dispatcher, c: Child, p: Promise<T>): Promise<T> {
  const entry = { c, settled: p.then(() => undefined, () => undefined) };
  core.underWay.add(entry);
  void entry.settled.then(() => core.underWay.delete(entry));
  return p;
}

/** Align Telegram with the bot's mode; a thrown error is a failed preparation. */
async function prepare(core: Dispatcher, c: Child, spec: BotSpec, telegram: PrepareTelegram): Promise<AdminResult> {
  const wanted = spec.mode ?? core.cfg.mode;
  const mode = wanted === 'auto' ? (core.cfg.webhookHost ? 'webhook' : 'polling') : wanted;
  try {
    const r = await telegram(core.deliveryRequest(c, spec, mode));
    if (!r.ok && r.tokenRejected) core.logger.error({ botId: c.botId, code: ErrorCodes.BAD_TOKEN, err: r.message }, 'token rejected: quarantined until it is fixed');
    if (r.ok && r.note) core.logger.warn({ botId: c.botId, note: r.note }, 'delivery prepared with a note');
    return r;
  } catch (err) {
    return { ok: false, tokenRejected: false, message: errorMessage(err) };
  }
}

/**
 * A failed fork as an event. The bot's configuration (a handler missing or closed to the
 * bot's uid, children without uids) is `config`: no restart can fix it (DESIGN.md). EMFILE,
 * EAGAIN, ENOMEM, a bad uid are the host's: a crash of this start, retried with backoff.
 */
async function forkFailed(core: Dispatcher, c: Child, attempt: number, err: unknown) {
  if (err instanceof BotfleetError && (err.code === ErrorCodes.HANDLER_LOAD || err.code === ErrorCodes.ISOLATION)) {
    core.logger.error({ botId: c.botId, code: err.code, err: err.message }, 'bot cannot start as configured: quarantined until it is fixed');
    return { type: 'fork-failed' as const, attempt, message: err.message, config: true };
  }
  const why = await forkFailureMessage(err);
  core.logger.error({ botId: c.botId, err: why }, 'fork failed');
  return { type: 'fork-failed' as const, attempt, message: why.startsWith('fork failed') ? why : `fork failed: ${why}`, config: false };
}

/** Fork the worker process; `early` is a violation found before the fork resolved. @throws what forkWorker or the isolation throws */
async function spawn(core: Dispatcher, c: Child, spec: BotSpec): Promise<{ proc: WorkerProcess; early: () => string | null }> {
  const { cfg, d, now } = core;
  c.log ??= createChildLog(d.logsDir, c.botId, { maxBytes: cfg.logMaxBytes, keep: cfg.logKeepFiles, bytesPerSec: cfg.workerLogBytesPerSec, now, echo: d.echoWorkerLine });
  const log = c.log;
  let violation: string | null = null;
  let proc: WorkerProcess | undefined;
  const isolation = d.isolationFor?.(c.botId, spec);
  c.uid = isolation?.uid ?? null;
  proc = await (d.fork ?? forkWorker)({
    maxOldSpaceMb: cfg.maxMemoryPerWorkerMb, semiSpaceMb: cfg.workerSemiSpaceMb, logLevel: cfg.logLevel, schedPolicy: cfg.workerSchedPolicy, now, isolation,
    onOutput: (line, stream, truncated) => log.line(line, stream, proc?.pid ?? 0, spec.token, truncated),
    onMessage: (m) => proc && onWorkerMessage(core, c, proc, m),
    // A violation can be found while fork() is still returning: remembered, reported once started.
    onViolation: (detail) => (proc && c.proc === proc ? core.dispatch(c, { type: 'protocol-violation', pid: proc.pid, detail }) : (violation = detail)),
  });
  return { proc, early: () => violation };
}

/** A forked worker's first steps: its counters reset, the exit watched, `init` sent. */
function start(core: Dispatcher, c: Child, proc: WorkerProcess, early: string | null): void {
  const { cfg, d } = core;
  const spec = c.spec!;
  Object.assign(c, { lastHeartbeatAt: null, lastBeat: null, rssBytes: 0, cpuPercent: null, queueDepth: 0 });
  void proc.exited.then((info) => {
    if (c.proc !== proc) return;
    // Whatever the worker left in its process group dies with it (a graceful exit left them before).
    // The group id cannot be reused while a member lives, so this never hits a stranger.
    try {
      process.kill(-proc.pid, 'SIGKILL');
    } catch {
      // the group is empty
    }
    const cause = d.onWorkerExit?.(c.botId, proc.pid); // the kernel's OOM killer: a SIGKILL the master did not send
    core.dispatch(c, { type: 'exit', pid: proc.pid, code: info.code, signal: info.signal, oom: cause === 'memory' });
  });
  const skip = poisonIds(c.delivery);
  onWorkerStart(c.delivery, skip);
  try {
    proc.send({
      v: 1, type: 'init', home: cfg.home, heartbeatIntervalMs: cfg.heartbeatIntervalMs, heartbeatTimeoutMs: cfg.heartbeatTimeoutMs, drainTimeoutMs: cfg.workerTimeoutMs,
      pollingTimeoutSec: cfg.pollingTimeoutSec, dedupWindowMs: cfg.dedupWindowMs,
      skipUpdateIds: skip, probationUpdateIds: probationIds(c.delivery), ackedUpdateIds: d.journal?.ackedIds(c.botId) ?? [], leaseUntil: d.leaseUntil?.() ?? null,
      bot: { id: c.botId, name: spec.name, token: spec.token, apiRoot: spec.apiRoot ?? cfg.telegramApiRoot, mode: c.life.mode!, handler: spec.handler, settings: spec.settings,
        api: botApiPolicy({ maxRetries: cfg.apiMaxRetries, retryBackoffMs: cfg.apiRetryBackoffMs, rateLimitGlobal: cfg.rateLimitGlobal, rateLimitPerChat: cfg.rateLimitPerChat }, spec.settings) },
    });
  } catch (err) {
    core.dispatch(c, { type: 'protocol-violation', pid: proc.pid, detail: `init could not be sent: ${errorMessage(err)}` });
  }
  core.logger.info({ botId: c.botId, workerPid: proc.pid, mode: c.life.mode }, 'worker forked');
  if (early) core.dispatch(c, { type: 'protocol-violation', pid: proc.pid, detail: early });
}

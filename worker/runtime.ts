/**
 * One bot's runtime inside its worker: the node-telegram-bot-api `Bot` with its
 * handler, fed either by long polling getUpdates or by updates from the master
 * over IPC, through a per-chat ordered queue and the dedup window. Counts
 * messages and errors for heartbeats and drains on shutdown.
 *
 * The worker's own Bot API calls (getMe, the getUpdates long poll, the offset
 * confirmation at stop) go through common/bot-api-http.ts rather than the
 * library's `Api`/`longPoll`: an idle bot then never loads the library's HTTP
 * stack (~70 ms CPU and ~7 MB PSS per worker, measured).
 *
 * Polling is at least once: the offset sent with getUpdates (which confirms every
 * update below it, https://core.telegram.org/bots/api#getupdates) is the lowest
 * `update_id` whose handler has not settled, so a worker killed mid-stream leaves
 * Telegram holding what it had not finished; the next worker skips the ids the
 * master saw acked (`init.ackedUpdateIds`). Twice only for an update whose handler
 * ran and whose ack died with the process.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import pRetry, { AbortError } from 'p-retry';
import { Bot, TelegramApiError, type Update } from 'node-telegram-bot-api';
import type { Logger } from 'pino';
import { createDedupWindow } from './dedup.js';
import { loadHandler } from './handlers/index.js';
import { BotApiError, botApiFetch, callBotApi } from '../common/bot-api-http.js';
import { countingFetch, createTelemetry, type Telemetry } from './telemetry.js';
import { createRepeatFilter } from '../common/repeat-filter.js';
import type { HandlerHooks } from './handlers/types.js';
import { BotfleetError } from '../common/errors.js';
import { createIntake, type RunStats } from './intake.js';
import { createLeaseGate, type LeaseGate } from './lease.js';
import type { Heartbeat } from './heartbeat.js';
import { createPolling, POLL_RETRY_MAX_MS, POLL_RETRY_MIN_MS, type BotCall, type Polling } from './polling.js';
import { FATAL_CODES, type MasterMessage, type WorkerCounters, type WorkerFatalReason, type WorkerLastError, type WorkerMessage } from './protocol.js';

type InitMessage = Extract<MasterMessage, { type: 'init' }>;

/** Identical handler errors within this window are logged once (ms). */
const ERROR_REPEAT_WINDOW_MS = 30_000;
/** Deadline of getMe. */
const CALL_TIMEOUT_MS = 10_000;

/** A reason to stop for good: the worker exits with 78 (do not restart) or 1. */
export class WorkerFatal extends BotfleetError {
  constructor(readonly reason: WorkerFatalReason, message: string) {
    super(FATAL_CODES[reason], message);
  }
}

/** The runtime's contract as used by worker/main.ts. */
export interface BotRuntime {
  /** Load the handler; then the worker can say `ready`. @throws WorkerFatal when the handler cannot load */
  start(): Promise<void>;
  /**
   * After `ready`: start long polling (polling mode) and check the token (getMe),
   * off the start path. A 401 here, or from getUpdates, ends the worker through
   * {@link BotRuntime.fatal} with exit 78.
   */
  begin(): void;
  /**
   * An update from the master (webhook mode, or an operator's replay in either mode);
   * acked over IPC once its handler settles. `replay` bypasses the skip list and the
   * dedup window: the operator asked for this update to run again.
   */
  deliver(update: Update, replay?: boolean): void;
  /** Hot-reload settings into the handler. */
  applySettings(settings: Record<string, unknown>): void;
  /**
   * Stop intake, let in-flight updates finish within the drain deadline, confirm the polling
   * offset, send the last acks. `abandonQueued` (the master is gone: no ack can reach it):
   * only the handlers already running finish; the queued updates are left to the next worker.
   */
  shutdown(abandonQueued?: boolean): Promise<void>;
  /** The counters when any moved since the previous call (the first call always), else null: an idle bot's heartbeat carries nothing but itself. */
  changedCounters(): WorkerCounters | null;
  /** Resolves with a fatal error if long polling gives up (e.g. 401 mid-run). */
  readonly fatal: Promise<WorkerFatal>;
  /** The cluster's deadline: past it this worker does not poll (worker/lease.ts). */
  readonly lease: LeaseGate;
}

/** Classify a Telegram error for status: its error_code, or a short name. */
function toLastError(err: unknown): WorkerLastError {
  const cut = (code: string, message: string): WorkerLastError => ({ code: code.slice(0, 64), message: message.slice(0, 500), at: Date.now() });
  if (err instanceof TelegramApiError) return cut(String(err.errorCode), String(err.description));
  if (err instanceof BotApiError) return cut(err.errorCode === null ? 'network' : String(err.errorCode), err.message);
  const e = err as { code?: unknown; message?: unknown };
  return cut(typeof e?.code === 'string' ? e.code : 'error', String(e?.message ?? err).split('\n')[0]!);
}

/** The library's `Bot` for this worker: botfleet's HTTP path (counted), the retry and rate-limit settings. */
function libraryBot(cfg: InitMessage['bot'], telemetry: ReturnType<typeof createTelemetry>): Bot {
  const { api } = cfg;
  const rateLimit = api.rateLimitGlobal > 0 || api.rateLimitPerChat > 0
    ? { ...(api.rateLimitGlobal > 0 ? { global: api.rateLimitGlobal } : {}), ...(api.rateLimitPerChat > 0 ? { perChat: api.rateLimitPerChat } : {}) } : undefined;
  // The library retries a 429 after its retry_after, and network errors and 5xx with jittered backoff.
  return new Bot(cfg.token, { apiRoot: cfg.apiRoot, fetch: countingFetch(botApiFetch, telemetry), maxRetries: api.maxRetries, retryBackoffMs: api.retryBackoffMs, ...(rateLimit ? { rateLimit } : {}) });
}

/**
 * getMe: learns the @username for status. 401 is fatal; a transient failure (network,
 * 5xx, 429 after its retry_after) is retried by p-retry with jittered backoff from 1 s
 * to 30 s until it answers or `signal` aborts; another 4xx is shown as lastError.
 */
function checkToken(call: BotCall, signal: AbortSignal, stats: RunStats, found: (username: string | null) => void, rejected: () => void): void {
  pRetry(async () => {
    try {
      const me = await call<{ username?: string }>('getMe', {}, CALL_TIMEOUT_MS, signal);
      found(me.username ?? null);
    } catch (err) {
      if (signal.aborted) throw new AbortError('stopped');
      if (err instanceof BotApiError && err.errorCode === 401) {
        rejected();
        throw new AbortError('token rejected');
      }
      stats.lastError = toLastError(err);
      if (!(err instanceof BotApiError) || !err.transient) throw new AbortError(stats.lastError.message);
      const waitMs = (err.retryAfterSec ?? 0) * 1000;
      if (waitMs > 0) await sleep(waitMs, undefined, { signal }).catch(() => undefined);
      throw err;
    }
  }, { forever: true, minTimeout: POLL_RETRY_MIN_MS, maxTimeout: POLL_RETRY_MAX_MS, randomize: true, signal }).catch(() => undefined);
}

/**
 * Handler errors: counted, the update marked failed (its ack says ok: false), kept as
 * lastError; the same error is logged once per ERROR_REPEAT_WINDOW_MS, then one line
 * says how many were suppressed. `end()` stops the timer and logs what is left.
 */
function catchHandlerErrors(bot: Bot, stats: RunStats, failed: WeakSet<Update>, logger: Logger): { end(): void } {
  const repeats = createRepeatFilter(ERROR_REPEAT_WINDOW_MS);
  const summarize = (all = false) => {
    for (const s of repeats.flush(Date.now(), all)) logger.warn({ err: s.key, suppressed: s.suppressed, windowMs: ERROR_REPEAT_WINDOW_MS }, 'identical handler errors suppressed');
  };
  // Armed only while errors come (an idle worker wakes for nothing): each turn flushes the windows that ended.
  let timer: NodeJS.Timeout | null = null;
  let lastAt = 0;
  const turn = () => {
    summarize();
    timer = Date.now() - lastAt < ERROR_REPEAT_WINDOW_MS ? setTimeout(turn, ERROR_REPEAT_WINDOW_MS).unref() : null;
  };
  bot.catch((err, ctx) => {
    lastAt = Date.now();
    timer ??= setTimeout(turn, ERROR_REPEAT_WINDOW_MS).unref();
    stats.errors++;
    failed.add(ctx.update);
    const e = (stats.lastError = toLastError(err));
    summarize();
    if (repeats.seen(`${e.code}: ${e.message}`, Date.now())) logger.warn({ updateId: ctx.update.update_id, err: e }, 'handler failed on update');
  });
  return {
    end() {
      if (timer) clearTimeout(timer);
      summarize(true);
    },
  };
}

/** The bot's own Bot API calls (long polling, getMe), each failure counted in telemetry by method and code. */
function botCall(cfg: InitMessage['bot'], telemetry: ReturnType<typeof createTelemetry>): BotCall {
  return <T>(method: string, params: object, timeoutMs: number, signal?: AbortSignal) =>
    callBotApi<T>(cfg.apiRoot, cfg.token, method, params, { timeoutMs, signal }).catch((err: unknown) => {
      if (err instanceof BotApiError) telemetry.apiError(method, err.errorCode ?? 'network');
      throw err;
    });
}

/** Load the bot's handler and run its setup. @throws WorkerFatal `handler-load` with the first line of the cause */
async function setUpHandler(init: InitMessage, bot: Bot, logger: Logger): Promise<HandlerHooks | void> {
  const cfg = init.bot;
  try {
    const setup = await loadHandler(cfg.handler, init.home);
    const handlerLogger = logger.child({ handler: cfg.handler });
    return await setup(bot, { botId: cfg.id, settings: cfg.settings, logger: handlerLogger, loggerFor: (c) => handlerLogger.child({ updateId: c.update.update_id }) });
  } catch (err) {
    throw new WorkerFatal('handler-load', `handler "${cfg.handler}" failed to load: ${(err as Error).message.split('\n')[0]}`);
  }
}

/** In a cluster only (a lease was handed over) a 409 waits for the master's re-check (polling.ts); alone, it is retried with backoff. */
const conflictPort = (init: InitMessage, send: (m: WorkerMessage) => void): { onConflict?(): void } => (init.leaseUntil != null ? { onConflict: () => send({ v: 1, type: 'conflict' }) } : {});

/**
 * Create the runtime for the bot described by `init`.
 * @param send posts a message to the master (IPC)
 * @param beats hears what the heartbeat rides on (worker/heartbeat.ts): every getUpdates' return, and
 *   changes the counters show that no message carries (the username, a polling error)
 */
export function createBotRuntime(init: InitMessage, send: (m: WorkerMessage) => void, logger: Logger, beats?: Heartbeat): BotRuntime {
  const { bot: cfg } = init;
  const telemetry = createTelemetry();
  const bot = libraryBot(cfg, telemetry);
  const dedup = createDedupWindow(init.dedupWindowMs);
  // Ids the master saw acked by earlier workers of this bot: not handled again.
  for (const id of init.ackedUpdateIds) dedup.seen(id, Date.now());
  const failed = new WeakSet<Update>();
  const stop = new AbortController();
  const stats: RunStats = { messages: 0, errors: 0, lastError: null };
  let hooks: HandlerHooks | void = undefined;
  let username: string | null = null;
  let pollDone: Promise<void> = Promise.resolve();
  let resolveFatal!: (f: WorkerFatal) => void;
  const fatal = new Promise<WorkerFatal>((r) => (resolveFatal = r));
  const tokenRejected = () => resolveFatal(new WorkerFatal('token-rejected', 'Telegram rejected the token (401 Unauthorized)'));

  const errors = catchHandlerErrors(bot, stats, failed, logger);
  const call = botCall(cfg, telemetry);
  // Polling: the loop's take() is bound once the intake exists.
  let take: (u: Update) => void = () => undefined;
  let waitForRoom: () => Promise<void> = () => Promise.resolve();
  const lease = createLeaseGate(init.leaseUntil ?? null);
  const polling: Polling | null = cfg.mode === 'polling' ? createPolling({
    call, timeoutSec: init.pollingTimeoutSec, signal: stop.signal, logger, lease, take: (u) => take(u), waitForRoom: () => waitForRoom(),
    describeError: toLastError, recordError: (e) => void ((stats.lastError = e), beats?.activity()), tokenRejected, ...conflictPort(init, send), onReturn: () => beats?.pollReturned(),
  }) : null;
  const intake = createIntake({ bot, mode: cfg.mode, send, logger, dedup, skip: new Set(init.skipUpdateIds), probation: new Set(init.probationUpdateIds ?? []), telemetry, stats, failed, describeError: toLastError, polling });
  take = intake.acceptPolled;
  waitForRoom = () => intake.queue.waitForRoom();

  return {
    fatal, lease,
    start: async () => void (hooks = await setUpHandler(init, bot, logger)),
    begin() {
      if (polling) pollDone = polling.run();
      checkToken(call, stop.signal, stats, (u) => void ((username = u), beats?.activity()), tokenRejected);
    },
    deliver: intake.accept,
    applySettings(settings) {
      if (hooks && typeof hooks.onSettings === 'function') hooks.onSettings(settings);
      logger.info({ keys: Object.keys(settings) }, 'settings reloaded');
    },
    async shutdown(abandonQueued = false) {
      errors.end();
      stop.abort();
      if (abandonQueued) intake.queue.abandon();
      await pollDone;
      const drained = await Promise.race([intake.queue.idle().then(() => true), sleep(init.drainTimeoutMs, false)]);
      if (!drained) logger.warn({ inFlight: intake.queue.depth() }, 'drain deadline reached with updates in flight');
      intake.flushAcks();
      // Confirm what was handled so the next worker does not get it again.
      await polling?.confirm();
    },
    ...heartbeatCounters(() => ({ ...stats, queueDepth: intake.queue.depth(), username }), telemetry),
  };
}

/** The heartbeat's counters, only when something moved since the previous call (an idle bot's beat carries nothing). */
function heartbeatCounters(now: () => Omit<WorkerCounters, 'rssBytes' | 'telemetry'>, telemetry: Telemetry): Pick<BotRuntime, 'changedCounters'> {
  let lastMark = '';
  return {
    changedCounters() {
      const c = now();
      const mark = `${c.messages} ${c.errors} ${c.lastError?.at} ${c.queueDepth} ${c.username} ${telemetry.changes()}`;
      if (mark === lastMark) return null;
      lastMark = mark;
      return { ...c, rssBytes: process.memoryUsage.rss(), telemetry: telemetry.snapshot() };
    },
  };
}

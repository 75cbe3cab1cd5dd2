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
import { Bot, Context, TelegramApiError, type Update } from 'node-telegram-bot-api';
import type { Logger } from 'pino';
import { createChatQueue, type ChatKey } from './chat-queue.js';
import { createDedupWindow } from './dedup.js';
import { loadHandler } from './handlers/index.js';
import { BotApiError, botApiFetch, callBotApi } from '../common/bot-api-http.js';
import { countingFetch, createTelemetry } from './telemetry.js';
import { createRepeatFilter } from '../common/repeat-filter.js';
import type { HandlerHooks } from './handlers/types.js';
import { createBatcher } from '../common/batcher.js';
import { updateProblem, type MasterMessage, type UpdateAck, type WorkerCounters, type WorkerFatalReason, type WorkerLastError, type WorkerMessage } from './protocol.js';

type InitMessage = Extract<MasterMessage, { type: 'init' }>;

/** Updates handled at once across chats before long polling waits for room. */
const MAX_IN_FLIGHT = 64;
/** Identical handler errors within this window are logged once (ms). */
const ERROR_REPEAT_WINDOW_MS = 30_000;
/** Backoff between long-polling attempts after an error: 1 s doubling to 30 s (a 429's retry_after when longer). */
const POLL_RETRY_MIN_MS = 1000;
const POLL_RETRY_MAX_MS = 30_000;
/** Client deadline beyond the long poll's server-side wait (the library's margin too). */
const POLL_MARGIN_MS = 10_000;
/**
 * While an update is unsettled, getUpdates from its offset returns at once with what
 * this worker already has: such a refetch waits for the lowest one to settle, or
 * this long, before asking again (the latency a slow handler adds to other chats).
 */
const REFETCH_WAIT_MS = 1000;
/** Deadline of getMe and of the offset confirmation at stop. */
const CALL_TIMEOUT_MS = 10_000;
const CONFIRM_TIMEOUT_MS = 2000;

/** A reason to stop for good: the worker exits with 78 (do not restart) or 1. */
export class WorkerFatal extends Error {
  constructor(readonly reason: WorkerFatalReason, message: string) {
    super(message);
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
  /** Stop intake, let in-flight updates finish within the drain deadline, confirm the polling offset, send the last acks. */
  shutdown(): Promise<void>;
  counters(): WorkerCounters;
  /** Resolves with a fatal error if long polling gives up (e.g. 401 mid-run). */
  readonly fatal: Promise<WorkerFatal>;
}

/** Classify a Telegram error for status: its error_code, or a short name. */
function toLastError(err: unknown): WorkerLastError {
  const cut = (code: string, message: string): WorkerLastError => ({ code: code.slice(0, 64), message: message.slice(0, 500), at: Date.now() });
  if (err instanceof TelegramApiError) return cut(String(err.errorCode), String(err.description));
  if (err instanceof BotApiError) return cut(err.errorCode === null ? 'network' : String(err.errorCode), err.message);
  const e = err as { code?: unknown; message?: unknown };
  return cut(typeof e?.code === 'string' ? e.code : 'error', String(e?.message ?? err).split('\n')[0]!);
}

/**
 * The chat an update belongs to, for per-chat ordering; updates with no chat run
 * unordered. A plain message (the common case) is read directly; every other kind
 * goes through the library's Context, which knows where each update type keeps
 * its chat (one Context fewer per update on the hot path).
 */
function chatKey(update: Update, bot: Bot): ChatKey {
  const chatId = (update as { message?: { chat?: { id?: unknown } } }).message?.chat?.id;
  if (typeof chatId === 'number') return chatId;
  // Malformed inside (a chat that is not an object, say): the library may throw; such an update runs unordered.
  try {
    const ctx = new Context(update, bot.api);
    const id = ctx.chat?.id ?? ctx.from?.id;
    if (typeof id === 'number' || typeof id === 'string') return id;
  } catch {
    // fall through
  }
  return `u${update.update_id}`;
}

/**
 * Create the runtime for the bot described by `init`.
 * @param send posts a message to the master (IPC)
 */
export function createBotRuntime(init: InitMessage, send: (m: WorkerMessage) => void, logger: Logger): BotRuntime {
  const { bot: cfg } = init;
  const { api } = cfg;
  const rateLimit = api.rateLimitGlobal > 0 || api.rateLimitPerChat > 0
    ? { ...(api.rateLimitGlobal > 0 ? { global: api.rateLimitGlobal } : {}), ...(api.rateLimitPerChat > 0 ? { perChat: api.rateLimitPerChat } : {}) } : undefined;
  // The library retries a 429 after its retry_after, and network errors and 5xx with jittered backoff.
  const telemetry = createTelemetry();
  const bot = new Bot(cfg.token, { apiRoot: cfg.apiRoot, fetch: countingFetch(botApiFetch, telemetry), maxRetries: api.maxRetries, retryBackoffMs: api.retryBackoffMs, ...(rateLimit ? { rateLimit } : {}) });
  const dedup = createDedupWindow(init.dedupWindowMs);
  // Ids the master saw acked by earlier workers of this bot: not handled again.
  for (const id of init.ackedUpdateIds) dedup.seen(id, Date.now());
  const failed = new WeakSet<Update>();
  const poll = new AbortController();
  let hooks: HandlerHooks | void = undefined;
  let messages = 0;
  let errors = 0;
  let lastError: WorkerLastError | null = null;
  let username: string | null = null;
  /** Highest update_id long polling has brought (polling mode). */
  let maxSeen = -1;
  let pollDone: Promise<void> = Promise.resolve();
  let resolveFatal!: (f: WorkerFatal) => void;
  const fatal = new Promise<WorkerFatal>((r) => (resolveFatal = r));

  // The same handler error is logged once per ERROR_REPEAT_WINDOW_MS, then one line says how many were suppressed.
  const repeats = createRepeatFilter(ERROR_REPEAT_WINDOW_MS);
  const summarizeRepeats = (all = false) => {
    for (const s of repeats.flush(Date.now(), all)) logger.warn({ err: s.key, suppressed: s.suppressed, windowMs: ERROR_REPEAT_WINDOW_MS }, 'identical handler errors suppressed');
  };
  const repeatTimer = setInterval(summarizeRepeats, ERROR_REPEAT_WINDOW_MS);
  repeatTimer.unref();
  bot.catch((err, ctx) => {
    errors++;
    failed.add(ctx.update);
    lastError = toLastError(err);
    summarizeRepeats();
    if (repeats.seen(`${lastError.code}: ${lastError.message}`, Date.now())) logger.warn({ updateId: ctx.update.update_id, err: lastError }, 'handler failed on update');
  });

  const skip = new Set(init.skipUpdateIds);
  const begins = createBatcher<number>((updateIds) => send({ v: 1, type: 'begin', updateIds }));
  const acks = createBatcher<UpdateAck>((list) => {
    begins.flushNow(); // a begin must never arrive after its ack
    send({ v: 1, type: 'ack', acks: list });
  });
  // A plain function returning the library's promise: an async wrapper was one more promise per update.
  /** Updates accepted whose handler has not settled yet (queued or running). */
  const handling = new Set<number>();
  /** Woken when an update settles (the polling loop waits on it to refetch). */
  let settled: (() => void) | null = null;
  /** Polled updates not settled yet, in update order (insertion order): the offset's source. */
  const unsettled = new Set<number>();
  const settle = (id: number) => {
    handling.delete(id);
    unsettled.delete(id);
    if (settled) {
      const wake = settled;
      settled = null;
      wake();
    }
  };
  /**
   * The offset to confirm: the lowest unsettled update_id, else one past the highest seen.
   */
  const offset = (): number | undefined => {
    for (const id of unsettled) return id;
    return maxSeen >= 0 ? maxSeen + 1 : undefined;
  };
  const handle = (update: Update): Promise<void> => {
    messages++;
    const began = performance.now();
    // The master must know an update is in flight before its handler can kill us.
    if (cfg.mode === 'polling') begins.flushNow();
    // A rejection here is the library failing outside any handler (a malformed update): an error, not a crash.
    return bot.handleUpdate(update).then(() => {
      acks.push({ updateId: update.update_id, ok: !failed.has(update) });
      settle(update.update_id);
      telemetry.handler((performance.now() - began) / 1000);
    }, (err: unknown) => {
      acks.push({ updateId: update.update_id, ok: false });
      settle(update.update_id);
      telemetry.handler((performance.now() - began) / 1000);
      errors++;
      lastError = toLastError(err);
    });
  };
  const queue = createChatQueue(handle, MAX_IN_FLIGHT);

  /** Polling: Telegram's updates are checked here (the master checks webhook updates at its edge). */
  const acceptPolled = (update: Update): void => {
    const problem = updateProblem(update);
    if (problem === null) return accept(update);
    // The culprit is dead-lettered by id, its body not sent (it may not serialize), and its offset passed.
    const id = typeof (update as { update_id?: unknown })?.update_id === 'number' ? update.update_id : -1;
    logger.warn({ updateId: id, problem }, 'malformed update dead-lettered');
    errors++;
    if (id >= 0) send({ v: 1, type: 'dlq', updateId: id, error: `malformed update: ${problem}` });
  };

  const accept = (update: Update, replay = false): void => {
    telemetry.received();
    if (replay) skip.delete(update.update_id);
    else if (skip.delete(update.update_id)) {
      // It was in flight when earlier workers of this bot died: a poison update.
      logger.warn({ updateId: update.update_id }, 'update dead-lettered: it was in flight through repeated worker deaths');
      send({ v: 1, type: 'dlq', updateId: update.update_id, error: 'in flight through repeated worker deaths', update });
      return;
    }
    if (!replay && dedup.seen(update.update_id, Date.now())) {
      telemetry.deduplicated();
      logger.debug({ updateId: update.update_id }, 'duplicate update dropped');
      if (cfg.mode === 'polling') return; // a refetch below the offset: nobody waits for an ack
      // Still in its handler: the first one's ack answers for both. Acking now would tell
      // the master it was handled before it was.
      if (!handling.has(update.update_id)) acks.push({ updateId: update.update_id, ok: true });
      return;
    }
    if (cfg.mode === 'polling') begins.push(update.update_id);
    handling.add(update.update_id);
    if (cfg.mode === 'polling' && !replay) unsettled.add(update.update_id);
    queue.push(chatKey(update, bot), update);
  };

  const call = <T>(method: string, params: object, timeoutMs: number, signal?: AbortSignal) =>
    callBotApi<T>(cfg.apiRoot, cfg.token, method, params, { timeoutMs, signal }).catch((err: unknown) => {
      if (err instanceof BotApiError) telemetry.apiError(method, err.errorCode ?? 'network');
      throw err;
    });
  const tokenRejected = (err: unknown) => err instanceof BotApiError && err.errorCode === 401;

  /**
   * getMe: learns the @username for status. 401 is fatal; a transient failure (network,
   * 5xx, 429 after its retry_after) is retried by p-retry with jittered backoff from 1 s
   * to 30 s until it answers or the worker stops; another 4xx is shown as lastError.
   */
  function checkToken(): void {
    pRetry(async () => {
      try {
        const me = await call<{ username?: string }>('getMe', {}, CALL_TIMEOUT_MS, poll.signal);
        username = me.username ?? null;
      } catch (err) {
        if (poll.signal.aborted) throw new AbortError('stopped');
        if (tokenRejected(err)) {
          resolveFatal(new WorkerFatal('token-rejected', 'Telegram rejected the token (401 Unauthorized)'));
          throw new AbortError('token rejected');
        }
        lastError = toLastError(err);
        if (!(err instanceof BotApiError) || !err.transient) throw new AbortError(lastError.message);
        const waitMs = (err.retryAfterSec ?? 0) * 1000;
        if (waitMs > 0) await sleep(waitMs, undefined, { signal: poll.signal }).catch(() => undefined);
        throw err;
      }
    }, { forever: true, minTimeout: POLL_RETRY_MIN_MS, maxTimeout: POLL_RETRY_MAX_MS, randomize: true, signal: poll.signal }).catch(() => undefined);
  }

  /**
   * Long polling (https://core.telegram.org/bots/api#getupdates) until stopped.
   * 401 is fatal; anything else (409 Conflict, 429, 5xx, no reply) is shown as
   * lastError and retried with backoff, never a crash.
   */
  async function pollLoop(): Promise<void> {
    let retryMs = POLL_RETRY_MIN_MS;
    while (!poll.signal.aborted) {
      let updates: Update[];
      try {
        updates = await call<Update[]>('getUpdates', { offset: offset(), timeout: init.pollingTimeoutSec }, init.pollingTimeoutSec * 1000 + POLL_MARGIN_MS, poll.signal);
      } catch (err) {
        if (poll.signal.aborted) return;
        if (tokenRejected(err)) {
          resolveFatal(new WorkerFatal('token-rejected', 'Telegram rejected the token (401 Unauthorized)'));
          return;
        }
        lastError = toLastError(err);
        const waitMs = Math.max(retryMs, ((err as BotApiError).retryAfterSec ?? 0) * 1000);
        logger.warn({ err: lastError, retryInMs: waitMs }, 'long polling failed');
        await sleep(waitMs, undefined, { signal: poll.signal }).catch(() => undefined);
        retryMs = Math.min(retryMs * 2, POLL_RETRY_MAX_MS);
        continue;
      }
      retryMs = POLL_RETRY_MIN_MS;
      let fresh = 0;
      for (const update of updates) {
        if (poll.signal.aborted) return;
        const id = (update as { update_id?: unknown })?.update_id;
        // Already taken by this worker (a refetch while something below is unsettled): skip.
        if (Number.isSafeInteger(id) && (id as number) <= maxSeen) continue;
        fresh++;
        if (Number.isSafeInteger(id)) maxSeen = id as number;
        acceptPolled(update);
        await queue.waitForRoom();
      }
      if (fresh === 0 && updates.length > 0) await refetchWait();
    }
  }

  /** Until the lowest unsettled update settles, {@link REFETCH_WAIT_MS} pass, or polling stops. */
  async function refetchWait(): Promise<void> {
    const lowest = offset();
    const deadline = Date.now() + REFETCH_WAIT_MS;
    while (!poll.signal.aborted && offset() === lowest && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        settled = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    settled = null;
  }

  return {
    fatal,
    async start() {
      let setup;
      try {
        setup = await loadHandler(cfg.handler, init.home);
        const handlerLogger = logger.child({ handler: cfg.handler });
        hooks = await setup(bot, { botId: cfg.id, settings: cfg.settings, logger: handlerLogger, loggerFor: (c) => handlerLogger.child({ updateId: c.update.update_id }) });
      } catch (err) {
        throw new WorkerFatal('handler-load', `handler "${cfg.handler}" failed to load: ${(err as Error).message.split('\n')[0]}`);
      }
    },
    begin() {
      if (cfg.mode === 'polling') pollDone = pollLoop();
      checkToken();
    },
    deliver: accept,
    applySettings(settings) {
      if (hooks && typeof hooks.onSettings === 'function') hooks.onSettings(settings);
      logger.info({ keys: Object.keys(settings) }, 'settings reloaded');
    },
    async shutdown() {
      clearInterval(repeatTimer);
      summarizeRepeats(true);
      poll.abort();
      await pollDone;
      const drained = await Promise.race([queue.idle().then(() => true), sleep(init.drainTimeoutMs, false)]);
      if (!drained) logger.warn({ inFlight: queue.depth() }, 'drain deadline reached with updates in flight');
      acks.flushNow();
      const confirm = offset();
      if (cfg.mode === 'polling' && confirm !== undefined) {
        // Confirm what was handled so the next worker does not get it again (getUpdates
        // confirms every update below `offset`; timeout 0 returns at once). An update
        // still unsettled at the drain deadline stays with Telegram.
        await call('getUpdates', { offset: confirm, limit: 1, timeout: 0 }, CONFIRM_TIMEOUT_MS).catch((err: unknown) => {
          logger.warn({ err: toLastError(err) }, 'could not confirm the polling offset');
        });
      }
    },
    counters() {
      const mem = process.memoryUsage();
      return { messages, errors, queueDepth: queue.depth(), rssBytes: mem.rss, heapUsedBytes: mem.heapUsed, lastError, username, telemetry: telemetry.snapshot() };
    },
  };
}

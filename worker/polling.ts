/**
 * Long polling (https://core.telegram.org/bots/api#getupdates), at least once: the
 * offset sent with getUpdates (which confirms every update below it) is the lowest
 * `update_id` whose handler has not settled, so a worker killed mid-stream leaves
 * Telegram holding what it had not finished. Owns the offset bookkeeping; the runtime
 * (worker/runtime.ts) feeds it settles and takes the updates it brings.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Update } from 'node-telegram-bot-api';
import type { Logger } from 'pino';
import { BotApiError } from '../common/bot-api-http.js';
import type { WorkerLastError } from './protocol.js';
import type { LeaseGate } from './lease.js';

/** Backoff between long-polling attempts after an error: 1 s doubling to 30 s (a 429's retry_after when longer). */
export const POLL_RETRY_MIN_MS = 1000;
export const POLL_RETRY_MAX_MS = 30_000;
/** Client deadline beyond the long poll's server-side wait (the library's margin too). */
const POLL_MARGIN_MS = 10_000;

/** The longest one getUpdates of `timeoutSec` can take (ms): its client deadline. */
export const pollWindowMs = (timeoutSec: number): number => timeoutSec * 1000 + POLL_MARGIN_MS;
/**
 * While an update is unsettled, getUpdates from its offset returns at once with what
 * this worker already has: such a refetch waits for the lowest one to settle, or
 * this long, before asking again (the latency a slow handler adds to other chats).
 */
const REFETCH_WAIT_MS = 1000;
/** Deadline of the offset confirmation at stop. */
const CONFIRM_TIMEOUT_MS = 2000;
/** Room kept for the confirmation to reach Telegram before the cluster's deadline, ms (a loopback call takes ~1-5 ms; a busy worker more). */
const CONFIRM_RESERVE_MS = 150;
/**
 * A poll that returns with less than this left before the cluster's deadline (ms) hands
 * nothing over: too late to handle and confirm its updates, they stay with Telegram for this
 * worker's next poll (the lease renewed) or the next owner, handled once either way.
 */
const TAKE_RESERVE_MS = 500;

/** A Bot API call of this bot: `timeoutMs` client deadline; rejects with BotApiError (or the signal's reason). */
export type BotCall = <T>(method: string, params: object, timeoutMs: number, signal?: AbortSignal) => Promise<T>;

/** What the poller needs from the runtime. */
export interface PollingDeps {
  call: BotCall;
  /** getUpdates' server-side wait (s). */
  timeoutSec: number;
  /** Aborted when the worker stops. */
  signal: AbortSignal;
  logger: Logger;
  /** A polled update, not yet checked (the runtime checks it and queues it). */
  take(update: Update): void;
  /** Resolves when the handler queue has room again. */
  waitForRoom(): Promise<void>;
  /** A failed call as status shows it (pure). */
  describeError(err: unknown): WorkerLastError;
  /** Keep it as the worker's lastError. */
  recordError(e: WorkerLastError): void;
  /** Telegram answered 401: the worker must end (exit 78). */
  tokenRejected(): void;
  /** The cluster's deadline (worker/lease.ts): no poll past it, and none outlives it. */
  lease?: LeaseGate;
  /** A 409 Conflict in a cluster: tell the master, which re-checks who owns the bot. */
  onConflict?(): void;
  /** A getUpdates returned, whatever it brought (the heartbeat rides on it: worker/heartbeat.ts). */
  onReturn?(): void;
}

/** The poller: its offset bookkeeping, the loop, and the confirmation at stop. */
export interface Polling {
  /** A polled update was queued: it holds the offset until it settles. */
  track(updateId: number): void;
  /** An update's handler settled (any mode). */
  settle(updateId: number): void;
  /** The offset to confirm: the lowest unsettled update_id, else one past the highest seen (undefined before any). */
  offset(): number | undefined;
  /** Poll until the signal aborts or the token is rejected; never throws. */
  run(): Promise<void>;
  /** Confirm the offset at stop (getUpdates with timeout 0): what was handled is not given to the next worker. */
  confirm(): Promise<void>;
}

/** The poller over `d` (see {@link Polling}). */
export function createPolling(d: PollingDeps): Polling {
  return new LongPoller(d);
}

class LongPoller implements Polling {
  /** Highest update_id long polling has brought. */
  private maxSeen = -1;
  /** Polled updates not settled yet, in update order (insertion order): the offset's source. */
  private readonly unsettled = new Set<number>();
  /** The offset the last getUpdates carried: Telegram confirmed everything below it when that call arrived. */
  private lastAsked: number | undefined;
  /** Woken when an update settles (the loop waits on it to refetch). */
  private settled: (() => void) | null = null;

  constructor(private readonly d: PollingDeps) {}

  track(id: number): void {
    this.unsettled.add(id);
  }

  settle(id: number): void {
    this.unsettled.delete(id);
    const wake = this.settled;
    this.settled = null;
    wake?.();
  }

  offset(): number | undefined {
    for (const id of this.unsettled) return id;
    return this.maxSeen >= 0 ? this.maxSeen + 1 : undefined;
  }

  /** Until the lowest unsettled update settles, {@link REFETCH_WAIT_MS} pass, or polling stops. */
  private async refetchWait(): Promise<void> {
    const lowest = this.offset();
    const deadline = Date.now() + REFETCH_WAIT_MS;
    while (!this.d.signal.aborted && this.offset() === lowest && Date.now() < deadline) await this.nextSettle(deadline - Date.now());
  }

  /**
   * Near the cluster's deadline, before the confirmation: until the updates being handled
   * settle, or only {@link CONFIRM_RESERVE_MS} are left for calls. The confirmation then covers
   * them; confirmed before they settle, they were left to the next owner, which handled them
   * again (the cluster test's blackhole: an update a poll brought just before the deadline).
   */
  private async settleBeforeDeadline(lease: LeaseGate): Promise<void> {
    while (!this.d.signal.aborted && this.unsettled.size > 0 && lease.msLeft() > CONFIRM_RESERVE_MS) await this.nextSettle(lease.msLeft() - CONFIRM_RESERVE_MS);
  }

  /** Until an update settles, `ms` pass, or polling stops. */
  private nextSettle(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.d.signal.removeEventListener('abort', done);
        this.settled = null;
        resolve();
      };
      const t = setTimeout(done, Math.max(1, ms));
      this.d.signal.addEventListener('abort', done);
      this.settled = done;
    });
  }

  /** One getUpdates: its updates, `retry` after a failure (already waited out), or `stop` (stopped, or the token rejected). */
  private async fetchOnce(retryMs: number): Promise<Update[] | 'retry' | 'stop' | 'conflict'> {
    const { d } = this;
    try {
      const timeout = d.lease ? d.lease.pollSeconds(d.timeoutSec) : d.timeoutSec;
      this.lastAsked = this.offset();
      return await d.call<Update[]>('getUpdates', { offset: this.lastAsked, timeout }, pollWindowMs(timeout), d.signal);
    } catch (err) {
      if (d.signal.aborted) return 'stop';
      if (err instanceof BotApiError && err.errorCode === 401) {
        d.tokenRejected();
        return 'stop';
      }
      const lastError = d.describeError(err);
      d.recordError(lastError);
      // In a cluster a 409 means another process polls this token: never a blind retry loop; the master re-checks first.
      if (err instanceof BotApiError && err.errorCode === 409 && d.lease && d.onConflict) return 'conflict';
      const waitMs = Math.max(retryMs, ((err as BotApiError).retryAfterSec ?? 0) * 1000);
      d.logger.warn({ err: lastError, retryInMs: waitMs }, 'long polling failed');
      await sleep(waitMs, undefined, { signal: d.signal }).catch(() => undefined);
      return 'retry';
    }
  }

  /** Hand the updates not taken before to the runtime, waiting for room after each. @returns how many were new, or -1 when polling stopped */
  private async takeFresh(updates: Update[]): Promise<number> {
    let fresh = 0;
    for (const update of updates) {
      if (this.d.signal.aborted) return -1;
      const id = (update as { update_id?: unknown })?.update_id;
      // Already taken by this worker (a refetch while something below is unsettled): skip.
      if (Number.isSafeInteger(id) && (id as number) <= this.maxSeen) continue;
      fresh++;
      if (Number.isSafeInteger(id)) this.maxSeen = id as number;
      this.d.take(update);
      await this.d.waitForRoom();
    }
    return fresh;
  }

  /**
   * 401 is fatal; anything else (429, 5xx, no reply; 409 Conflict without a cluster) is shown as lastError and retried
   * with backoff, never a crash. In a cluster a 409 holds polling until the master confirms the bot is still its own.
   */
  async run(): Promise<void> {
    let retryMs = POLL_RETRY_MIN_MS;
    while (!this.d.signal.aborted) {
      if (this.d.lease && this.d.lease.pollSeconds(this.d.timeoutSec) < 1) {
        // Too close to the deadline for a long poll: confirm what was handled while a call is still allowed (a short
        // one, over at once), so a next owner does not get it again; then no call until the master renews the lease.
        await this.settleBeforeDeadline(this.d.lease);
        await this.confirm();
        if (this.d.lease.pollSeconds(this.d.timeoutSec) >= 1) continue; // renewed meanwhile
        this.d.logger.warn("the cluster lease's deadline is near: no polling until the master renews it");
        await this.d.lease.renewed(this.d.signal);
        continue;
      }
      const updates = await this.fetchOnce(retryMs);
      this.d.onReturn?.();
      if (updates === 'stop') return;
      if (updates === 'conflict') {
        this.d.logger.warn('getUpdates answered 409 Conflict (another poller of this token): no polling until the master has re-checked who owns the bot');
        this.d.lease!.hold(); // 'conflict' comes only with a lease
        this.d.onConflict?.();
        await this.d.lease!.renewed(this.d.signal);
        continue;
      }
      if (updates === 'retry') {
        retryMs = Math.min(retryMs * 2, POLL_RETRY_MAX_MS);
        continue;
      }
      retryMs = POLL_RETRY_MIN_MS;
      if (updates.length > 0 && this.d.lease && this.d.lease.msLeft() < TAKE_RESERVE_MS) {
        this.d.logger.warn({ updates: updates.length }, "the cluster lease's deadline is too near to handle and confirm what the poll brought: left with Telegram");
        continue;
      }
      const fresh = await this.takeFresh(updates);
      if (fresh < 0) return;
      if (fresh === 0 && updates.length > 0) await this.refetchWait();
    }
  }

  async confirm(): Promise<void> {
    const at = this.offset();
    // Nothing settled since the last call (the one just aborted) carried this offset: it is confirmed already, and a
    // second getUpdates now would reach Telegram beside the aborted one (a 409 to nobody, but two calls at once).
    if (at === undefined || at === this.lastAsked) return;
    // Past the cluster's deadline another master may be polling this token: what this worker handled is left
    // unconfirmed (the next owner gets it again: at least once) rather than a getUpdates beside its poll.
    if (this.d.lease && !this.d.lease.live()) return void this.d.logger.warn('the cluster lease has expired: the polling offset is left unconfirmed');
    // An update still unsettled at the drain deadline stays with Telegram.
    this.lastAsked = at;
    await this.d.call('getUpdates', { offset: at, limit: 1, timeout: 0 }, CONFIRM_TIMEOUT_MS).catch((err: unknown) => {
      this.d.logger.warn({ err: this.d.describeError(err) }, 'could not confirm the polling offset');
    });
  }
}

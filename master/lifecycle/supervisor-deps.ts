/**
 * What the supervisor is given (its ports): configuration, logger, the fork and clock
 * seams, isolation, the registry's keeping of histories and dead letters, and the
 * delivery wing's journal. Types only, so every lifecycle module can name them.
 */
import type { Update } from 'node-telegram-bot-api';
import type { Logger } from 'pino';
import type { Config } from '../../config/load.js';
import type { ChildState, ExitReason, RestoredHistory } from './phase.js';
import type { forkWorker, ForkIsolation } from './child-process.js';
import type { BotSpec } from '../../config/bot-spec.js';
import type { Clock } from './clock.js';
import type { RestartHistory } from './policy/restart.js';
import type { UpdateSink } from '../delivery/in-flight.js';
import type { PrepareTelegram } from './launch.js';
import type { DeliveryRequest } from './telegram-admin.js';

/** What the supervisor needs from outside; `fork` and `now` are seams for tests. */
export interface SupervisorDeps {
  config: Config;
  logger: Logger;
  cores: number;
  logsDir: string;
  secretTokenFor(botId: string): string;
  fork?: typeof forkWorker;
  /** Monotonic clock (ms) for every deadline and restart window; default performance.now. */
  now?: () => number;
  /** The clock and timers of every deadline, backoff and check (default: the real ones); `now` wins for the time if both are given. */
  clock?: Clock;
  /** Per-bot isolation at the fork (uid, permission flags); none when absent. */
  isolationFor?(botId: string, spec: BotSpec): ForkIsolation;
  /** Called once a removed bot's worker is gone and the bot is forgotten (e.g. to delete its data directory). */
  onRemoved?(botId: string): void;
  /**
   * Called after a worker's exit (e.g. to end every process left under the bot's uid).
   * @returns `memory` when the kernel's OOM killer ended it (its cgroup says so), for `lastExit.reason`
   */
  onWorkerExit?(botId: string, pid: number): ExitReason | void;
  /** The size of the bot's own directory (bytes; host/disk.ts), stopped early past `stopAbove`; null when unreadable. */
  dataUsage?(botId: string, stopAbove: number): number | null | Promise<number | null>;
  /** The bot's memory as its cgroup counts it (bytes), or null without one. */
  memoryOf?(botId: string): number | null;
  /** The processes of the bot's cgroup (its whole tree), or null without one. */
  pidsOf?(botId: string): number[] | null;
  /** Told of every worker pid forked and exited (for zombie cleanup after a master crash). */
  onPids?(live: Array<{ pid: number; botId: string }>): void;
  /** Told of each restart decision: the bot's restart history and quarantine end (monotonic ms), to keep them in the registry. */
  onHistory?(botId: string, history: RestartHistory, quarantinedUntil: number | null, doNotRestart: boolean, reason?: string | null): void;
  /** Restart histories kept from an earlier master (monotonic ms of this process), applied when each bot is first seen. */
  histories?: Map<string, RestoredHistory>;
  /** Told of every dead-lettered update (to keep it in the dead-letter queue); `update` is null when a worker did not send it. */
  onDeadLetter?(botId: string, updateId: number, update: Update | null, reason: string): void;
  /** Given each line written to a bot's log, with its botId (LOG_TO_STDOUT); none by default. */
  echoWorkerLine?(line: string): void;
  /** The delivery wing's journal (webhook updates, durable dedup); none in tests that do not deliver. */
  journal?: DeliveryPort;
  /** Telegram's side of a launch (setWebhook/deleteWebhook; telegram-admin.ts by default; a fake in tests). */
  telegram?: PrepareTelegram;
  /** Who runs `botId` instead of this master (the cluster: another member, or why none yet); null or absent: this master may run it. */
  ownerOf?(botId: string): string | null;
  /** The machine's available memory in bytes (host/meminfo.ts), for MEMORY_RESERVE_MB; absent or null: no memory check. */
  availableMemory?(): number | null;
  /** A fresh look at who owns `botId` after its worker's 409 (the cluster's re-check). @returns true when this master still owns it with a live lease */
  recheckOwner?(botId: string): Promise<boolean>;
  /** The cluster member that runs `botId` (this master's id when it runs here), null while none does: the status rows' `owner`. */
  memberOf?(botId: string): string | null;
  /** The cluster's renew deadline for a new worker (machine monotonic ms, common/mono.ts); null or absent: none. */
  leaseUntil?(): number | null;
  /** Telegram's check of a webhook registration (checkWebhook by default). */
  checkWebhook?(r: DeliveryRequest): Promise<string | null>;
}

/** What the supervisor tells the journal (see master/delivery/journal.ts). */
export interface DeliveryPort {
  attach(botId: string, sink: UpdateSink): void;
  pause(botId: string): void;
  /** `unexplained`: a crash, an unasked exit or a protocol violation (its in-flight updates become suspects). */
  workerGone(botId: string, unexplained: boolean): void;
  acked(botId: string, acks: ReadonlyArray<{ updateId: number; ok: boolean }>): void;
  ackedIds(botId: string): number[];
}

export type { RestoredHistory };

/** Emitted on every state change. */
export interface TransitionEvent { botId: string; from: ChildState; to: ChildState; reason: string | null }

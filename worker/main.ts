/**
 * Worker entry: one bot per process. Waits for `init` over IPC (the only way the
 * token arrives), runs the bot, sends heartbeats, acks updates, and exits when
 * told to shut down or when the IPC channel closes (a dead master leaves no orphan).
 * Exit codes: 0 normal, 78 do-not-restart (token rejected, handler cannot load), 1 crash.
 */
import { guardWorkerProcess } from './guard.js';
import { createLogger, lazyLogger, redactingStream } from '../common/logger.js';
import { openWorkerChannel } from './channel.js';
import { assertNever } from '../common/errors.js';
import { EXIT_CONFIG, parseMasterMessage, type MasterMessage, type WorkerMessage } from './protocol.js';
import { createBotRuntime, WorkerFatal, type BotRuntime } from './runtime.js';
import { heartbeatPeriodMs, startHeartbeat, type Heartbeat } from './heartbeat.js';
import { pollWindowMs } from './polling.js';

guardWorkerProcess();

const INIT_DEADLINE_MS = 30_000;
let token = '';
const level = process.env.LOG_LEVEL ?? 'info';
// Created on first use: pino's import stays off the path to `ready`.
const logger = lazyLogger(level, () => createLogger(redactingStream((l) => process.stdout.write(l), () => [token]), level));

/** Last acks get this long to reach the master before the process exits. */
const FLUSH_MS = 1000;
// A failed send (the master is gone) is not an error here: the channel's close ends the worker.
const channel = openWorkerChannel(onRaw, () => void exit(0, 'channel to the master closed', true));
function send(m: WorkerMessage): void {
  if (m.type !== 'heartbeat') heartbeat?.activity();
  try {
    channel.send(m);
  } catch (err) {
    logger.warn({ type: m.type, err: String((err as Error)?.message ?? err) }, 'message to the master could not be sent');
  }
}

let runtime: BotRuntime | undefined;
let heartbeat: Heartbeat | null = null;
let exiting = false;

/** Shut down and exit; `masterGone`: the queued updates are left to the next worker (shutdown's abandonQueued). */
async function exit(code: number, why: string, masterGone = false): Promise<void> {
  if (exiting) return;
  exiting = true;
  logger.info({ code, why }, 'worker exiting');
  if (runtime) await runtime.shutdown(masterGone).catch((err: unknown) => logger.error({ err: String(err) }, 'shutdown failed'));
  await channel.flush(FLUSH_MS);
  logger.flush?.();
  process.exit(code);
}

function fatal(f: WorkerFatal): void {
  logger.error({ reason: f.reason }, f.message);
  send({ v: 1, type: 'error', reason: f.reason, message: f.message });
  void exit(f.reason === 'fatal' ? 1 : EXIT_CONFIG, f.reason);
}

async function onInit(m: Extract<MasterMessage, { type: 'init' }>): Promise<void> {
  token = m.bot.token;
  runtime = createBotRuntime(m, send, logger.child({ botId: m.bot.id }), { pollReturned: () => heartbeat?.pollReturned(), activity: () => heartbeat?.activity() });
  void runtime.fatal.then(fatal);
  try {
    await runtime.start();
    send({ v: 1, type: 'ready' });
    runtime.begin();
    logger.info({ botId: m.bot.id, mode: m.bot.mode }, 'worker ready');
  } catch (err) {
    if (err instanceof WorkerFatal) return fatal(err);
    logger.error({ err: String((err as Error)?.message ?? err) }, 'worker failed to start');
    return void exit(1, 'start failed');
  }
  const beat = () => {
    const counters = runtime!.changedCounters();
    send(counters ? { v: 1, type: 'heartbeat', ...counters } : { v: 1, type: 'heartbeat', same: true });
  };
  const pollWindow = m.bot.mode === 'polling' ? pollWindowMs(m.pollingTimeoutSec) : null;
  heartbeat = startHeartbeat({
    beat, intervalMs: m.heartbeatIntervalMs, now: Date.now, setTimer: (fn, ms) => setTimeout(fn, ms), clearTimer: clearTimeout,
    periodMs: heartbeatPeriodMs({ intervalMs: m.heartbeatIntervalMs, timeoutMs: m.heartbeatTimeoutMs, pollWindowMs: pollWindow }),
  });
}

const initTimer = setTimeout(() => void exit(1, 'no init message'), INIT_DEADLINE_MS);

function onRaw(raw: unknown): void {
  const m = parseMasterMessage(raw);
  if (!m) {
    logger.warn({ type: (raw as { type?: unknown })?.type }, 'unknown IPC message dropped');
    return;
  }
  switch (m.type) {
    case 'init':
      clearTimeout(initTimer);
      if (runtime) return logger.warn('second init ignored');
      return void onInit(m);
    case 'update':
      for (const u of m.updates) runtime?.deliver(u, m.replay === true);
      return;
    case 'settings':
      return runtime?.applySettings(m.settings);
    case 'shutdown':
      return void exit(0, m.reason);
    case 'lease':
      return runtime?.lease.set(m.until, m.confirmed === true);
    default:
      assertNever(m);
  }
}
// With the master gone our pipes break: a log line must not kill a worker that is
// still finishing its in-flight updates (EPIPE would otherwise be an uncaught error).
process.stdout.on('error', () => undefined);
process.stderr.on('error', () => undefined);
process.on('SIGTERM', () => void exit(0, 'SIGTERM'));
process.on('SIGINT', () => undefined); // the master decides; a terminal Ctrl-C is not for us
process.on('unhandledRejection', (err) => {
  logger.error({ err: String((err as Error)?.stack ?? err) }, 'unhandled rejection');
  void exit(1, 'unhandled rejection');
});

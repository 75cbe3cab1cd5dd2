/**
 * A real fleet for integration tests: a temporary home, the Bot API emulator on
 * loopback, bots added with the real CLI, and the master started by the real
 * CLI entry point (`node dist/cli/main.js start`) as a child process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../common/free-port.js';
import { controlRequest } from '../../master/surfaces/control-server.js';
import { removeUidLock } from '../../master/host/uid-locks.js';
import { cgroupName } from '../../master/host/bot-limits.js';
import { removeGroupsNamed } from '../../master/host/cgroups.js';
import type { FleetStatus } from '../../master/surfaces/status-server.js';
import type { EmulatedBot } from '../../scripts/emulator/bot-state.js';
import { BotApiEmulator } from '../../scripts/emulator/emulator.js';
import { alive, waitFor } from './wait.js';

export const CLI = fileURLToPath(new URL('../../cli/main.js', import.meta.url));
export const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url));

/** Small timings so faults are seen fast. */
export const FAST_ENV = {
  POLLING_TIMEOUT_SEC: '2', HEARTBEAT_INTERVAL_MS: '300', HEARTBEAT_TIMEOUT_MS: '3000', WORKER_TIMEOUT_MS: '3000',
  RESTART_BACKOFF_MS: '100', RESTART_COOLDOWN_MS: '1000', REGISTRY_POLL_MS: '200', STARTUP_TIMEOUT_MS: '15000', LOG_LEVEL: 'debug',
  // Test fleets stream hundreds of updates through a few chats: Telegram's 1/s per chat would make them minutes long.
  RATE_LIMIT_GLOBAL: '0', RATE_LIMIT_PER_CHAT: '0',
};

/**
 * `webhook`: a webhook server on loopback; `asUid`: run the CLI and the master as this uid (needs root);
 * `credentials`: more setpriv(1) options for them (capability sets, `--no-new-privs`: a credential model);
 * `home`: an existing directory to use.
 */
/** `emulator`: share one (a cluster's masters talk to one Telegram); it is then left running at stop. */
export interface FleetOptions { webhook?: boolean; asUid?: number; credentials?: string[]; home?: string; emulator?: BotApiEmulator }

export interface Fleet {
  home: string;
  emulator: BotApiEmulator;
  env: NodeJS.ProcessEnv;
  master: ChildProcess | null;
  masterOutput: string[];
  /** Run the CLI as a child process (never spawnSync: the emulator lives in this process and must keep answering). */
  cli(args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }>;
  /** Add a bot through the CLI (token read from stdin, so never in argv). */
  addBot(id: string, opts?: { mode?: string; handler?: string; settings?: object }): Promise<EmulatedBot>;
  tg(id: string): EmulatedBot;
  startMaster(): Promise<void>;
  status(): Promise<FleetStatus>;
  /** GET `path` from the master's status server (its port read from `run/ports.json`). */
  statusHttp(path: string): Promise<{ status: number; body: string }>;
  worker(id: string): Promise<FleetStatus['workers'][number] | undefined>;
  waitRunning(ids: string[], ms?: number): Promise<FleetStatus>;
  /** POST `body` (a string) to bot `id`'s webhook with its real secret token; resolves with the HTTP status. */
  postWebhook(id: string, body: string): Promise<number>;
  /** Wait until bot `id`'s status row satisfies `pred`; resolves with that row. */
  waitWorker(id: string, pred: (w: FleetStatus['workers'][number]) => boolean, ms: number, what: string): Promise<FleetStatus['workers'][number]>;
  /** The user `chatId` says `text` to bot `id`; resolves with the reply text. */
  chat(id: string, chatId: number, text: string, ms?: number): Promise<string>;
  stop(): Promise<void>;
  /**
   * 409 Conflicts a live worker of bot `id` received (from its log): the sign of two
   * pollers at once. The emulator's own count also includes requests whose client
   * had already hung up (a worker ending its long poll to stop), which harm nobody.
   */
  conflictsSeen(id: string): number;
}

/** `Authorization` for the status server of `home`: its generated token (data/status.token; the test runs as root). */
export function statusAuthHeaders(home: string): Record<string, string> {
  const file = path.join(home, 'data', 'status.token');
  return fs.existsSync(file) ? { authorization: `Bearer ${fs.readFileSync(file, 'utf8').trim()}` } : {};
}

let fleetsMade = 0;
/**
 * A WORKER_UID_BASE of its own for each fleet: test files run in parallel, and two
 * masters sharing a uid range would end each other's workers (the master refuses that).
 */
export function uniqueUidBase(): string {
  return String(1_000_000 + (process.pid % 100_000) * 1000 + (fleetsMade++ % 50) * 20);
}

/** Build a fleet in a fresh temporary home. `extraEnv` overrides {@link FAST_ENV}. */
export async function createFleet(extraEnv: Record<string, string> = {}, opts: FleetOptions = {}): Promise<Fleet> {
  const home = opts.home ?? fs.mkdtempSync(path.join(os.tmpdir(), 'botfleet-test-'));
  if (opts.asUid !== undefined) fs.chownSync(home, opts.asUid, opts.asUid);
  // Through util-linux setpriv: the CLI and the master run as that uid with no groups (a non-root master).
  const who = opts.asUid === undefined ? [] : [`--reuid=${opts.asUid}`, `--regid=${opts.asUid}`, '--clear-groups'];
  const setpriv = [...who, ...(opts.credentials ?? [])];
  const run = (args: string[]): [string, string[]] => setpriv.length === 0 ? [process.execPath, args] : ['setpriv', [...setpriv, '--', process.execPath, ...args]];
  const emulator = opts.emulator ?? new BotApiEmulator({ webhookRetryMs: 100 });
  const apiRoot = opts.emulator ? emulator.apiRoot : await emulator.start();
  const webhookPort = await freePort();
  const env: NodeJS.ProcessEnv = {
    ...process.env, BOTFLEET_HOME: home, TELEGRAM_API_ROOT: apiRoot, STATUS_PORT: '0', STATUS_HOST: '127.0.0.1', ...FAST_ENV, WORKER_UID_BASE: uniqueUidBase(),
    ...(opts.webhook ? { WEBHOOK_HOST: `http://127.0.0.1:${webhookPort}`, WEBHOOK_PORT: String(webhookPort), WEBHOOK_LISTEN_HOST: '127.0.0.1' } : {}),
    ...extraEnv,
  };
  const tgs = new Map<string, EmulatedBot>();
  const socket = path.join(home, 'run', 'botfleet.sock');
  const fleet: Fleet = {
    home, emulator, env, master: null, masterOutput: [],
    async cli(args, input) {
      const child = spawn(...run([CLI, ...args]), { env, stdio: ['pipe', 'pipe', 'pipe'], timeout: 60_000 });
      let stdout = '';
      let stderr = '';
      child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      child.stdin!.end(input ?? '');
      const [code] = (await once(child, 'close')) as [number | null];
      return { code: code ?? -1, stdout, stderr };
    },
    async addBot(id, o = {}) {
      const tg = emulator.createBot(`${id}_bot`);
      const args = ['bots', 'add', '--id', id, '--name', id, '--token', '-', '--handler', o.handler ?? 'echo'];
      if (o.mode) args.push('--mode', o.mode);
      if (o.settings) args.push('--settings', JSON.stringify(o.settings));
      const r = await fleet.cli(args, tg.token);
      if (r.code !== 0) throw new Error(`bots add ${id} failed: ${r.stderr}`);
      tgs.set(id, tg);
      return tg;
    },
    tg(id) {
      const t = tgs.get(id);
      if (!t) throw new Error(`no emulated bot ${id}`);
      return t;
    },
    async startMaster() {
      const m = spawn(...run([CLI, 'start']), { env, stdio: ['ignore', 'pipe', 'pipe'] });
      fleet.master = m;
      m.stdout!.on('data', (d: Buffer) => fleet.masterOutput.push(d.toString()));
      m.stderr!.on('data', (d: Buffer) => fleet.masterOutput.push(d.toString()));
      await waitFor(() => fs.existsSync(socket) || m.exitCode !== null, 20_000, 'the master creating its control socket');
      if (m.exitCode !== null) throw new Error(`master exited with ${m.exitCode}: ${fleet.masterOutput.join('')}`);
    },
    status: () => controlRequest(socket, { cmd: 'status' }, 10_000) as Promise<FleetStatus>,
    async statusHttp(p) {
      const { status: port } = JSON.parse(fs.readFileSync(path.join(home, 'run', 'ports.json'), 'utf8')) as { status: number };
      const res = await fetch(`http://127.0.0.1:${port}${p}`, { headers: statusAuthHeaders(home), signal: AbortSignal.timeout(10_000) });
      return { status: res.status, body: await res.text() };
    },
    async worker(id) {
      return (await fleet.status()).workers.find((w) => w.botId === id);
    },
    waitRunning(ids, ms = 20_000) {
      return waitFor(async () => {
        const s = await fleet.status();
        return ids.every((id) => s.workers.find((w) => w.botId === id)?.state === 'running') ? s : null;
      }, ms, `bots ${ids.join(', ')} all running`);
    },
    async postWebhook(id, body) {
      const hook = fleet.tg(id).webhook!;
      const res = await fetch(hook.url, { method: 'POST', body, headers: { 'content-type': 'application/json', 'x-telegram-bot-api-secret-token': hook.secretToken! }, signal: AbortSignal.timeout(10_000) });
      await res.arrayBuffer();
      return res.status;
    },
    waitWorker(id, pred, ms, what) {
      return waitFor(async () => {
        const w = await fleet.worker(id);
        return w && pred(w) ? w : null;
      }, ms, what);
    },
    async chat(id, chatId, text, ms = 15_000) {
      const tg = fleet.tg(id);
      const before = tg.sent.length;
      emulator.userSends(tg, chatId, text);
      const m = await emulator.waitForSent(tg, (x) => x.chat_id === chatId && tg.sent.indexOf(x) >= before, ms, `a reply to "${text}" in chat ${chatId}`);
      return m.text;
    },
    conflictsSeen(id) {
      const file = path.join(home, 'logs', `worker_${id}.log`);
      if (!fs.existsSync(file)) return 0;
      return fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.includes('"code":"409"')).length;
    },
    async stop() {
      const m = fleet.master;
      if (m && m.exitCode === null && m.signalCode === null) {
        const pids = (await fleet.status().catch(() => null))?.workers.map((w) => w.pid).filter((p): p is number => p !== null) ?? [];
        m.kill('SIGTERM');
        await waitFor(() => m.exitCode !== null || m.signalCode !== null, 20_000, 'the master exiting on SIGTERM').catch(() => m.kill('SIGKILL'));
        for (const pid of pids) if (alive(pid)) process.kill(-pid, 'SIGKILL');
      }
      if (!opts.emulator) await emulator.stop();
      if (!opts.home && !process.env.BOTFLEET_KEEP_TEST_HOMES) fs.rmSync(home, { recursive: true, force: true }); // kept for a look after a failure
      // The machine-wide lock file of this fleet's own uid range (its master has exited).
      removeUidLock(env.WORKER_UID_BASE!, env);
      // The per-bot cgroups of this home, which a master killed by a test could not remove (a worker
      // still exiting keeps its group busy for a moment: a few tries).
      for (let i = 0; i < 4; i++) {
        removeGroupsNamed(cgroupName(path.resolve(home)));
        await new Promise((r) => setTimeout(r, 100));
      }
    },
  };
  return fleet;
}

/** Run `fn` with a fresh fleet, and stop it (master, workers, emulator, home) whatever happens. */
export async function withFleet<T>(extraEnv: Record<string, string>, opts: FleetOptions, fn: (fleet: Fleet) => Promise<T>): Promise<T> {
  const fleet = await createFleet(extraEnv, opts);
  try {
    return await fn(fleet);
  } finally {
    await fleet.stop();
  }
}

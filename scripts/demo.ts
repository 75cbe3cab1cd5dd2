/**
 * `botfleet demo` / `npm run demo`: the whole system offline, printed as it
 * happens. A local Bot API emulator, three bots (two long polling, one on the
 * webhook server), simulated users chatting, the status table, a SIGKILLed
 * worker coming back, then a clean stop. Runs in a temporary home it removes.
 */
import { pathToFileURL } from 'node:url';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../common/free-port.js';
import { loadConfig, homePaths } from '../config/load.js';
import { statusTable } from '../master/surfaces/status-table.js';
import { startMaster } from '../master/main.js';
import { openHomeRegistry } from '../master/store/registry.js';
import { controlRequest } from '../master/surfaces/control-server.js';
import { processAlive } from '../master/host/pid-file.js';
import { removeUidLock } from '../master/host/uid-locks.js';
import type { FleetStatus } from '../master/surfaces/status-server.js';
import { BotApiEmulator } from './emulator/emulator.js';

/** Bold only on a terminal, and never with NO_COLOR (https://no-color.org). */
const bold = process.stdout.isTTY === true && !process.env.NO_COLOR;
const say = (s: string) => console.log(bold ? `\x1b[1m==>\x1b[0m ${s}` : `==> ${s}`);

/** Run the demo; resolves when everything it started has stopped. */
export async function runDemo(): Promise<void> {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'botfleet-demo-'));
  const emulator = new BotApiEmulator({ webhookRetryMs: 200 });
  const apiRoot = await emulator.start();
  say(`Bot API emulator listening at ${apiRoot} (no network, no real token)`);
  const webhookPort = await freePort();
  // A throwaway uid range (the cluster demo's blocks leave this offset free): a master the operator runs on the default base keeps it.
  const uidBase = String(2_000_000 + (process.pid % 10_000) * 100 + 90);
  const cfg = loadConfig({}, {
    WORKER_UID_BASE: uidBase,
    BOTFLEET_HOME: home, TELEGRAM_API_ROOT: apiRoot, STATUS_PORT: '0', WEBHOOK_PORT: String(webhookPort),
    WEBHOOK_LISTEN_HOST: '127.0.0.1', WEBHOOK_HOST: `http://127.0.0.1:${webhookPort}`, POLLING_TIMEOUT_SEC: '5',
    HEARTBEAT_INTERVAL_MS: '1000', HEARTBEAT_TIMEOUT_MS: '5000', WORKER_TIMEOUT_MS: '3000', LOG_LEVEL: 'info',
  });
  const p = homePaths(home);
  const registry = openHomeRegistry(p, undefined);
  const bots = [
    { id: 'echo', name: 'Echo', tg: emulator.createBot('echo_demo_bot'), mode: 'polling' as const, handler: 'echo', settings: {} },
    { id: 'faq', name: 'FAQ', tg: emulator.createBot('faq_demo_bot'), mode: 'polling' as const, handler: 'autoreply', settings: { greeting: 'Welcome to the FAQ bot!', rules: { price: 'It costs nothing.', hours: 'We never close.' }, fallback: 'Ask me about price or hours.' } },
    { id: 'hooked', name: 'Hooked', tg: emulator.createBot('hooked_demo_bot'), mode: 'webhook' as const, handler: 'echo', settings: {} },
  ];
  for (const b of bots) registry.add({ id: b.id, name: b.name, token: b.tg.token, mode: b.mode, handler: b.handler, settings: b.settings });
  registry.close();
  say(`registry at ${p.db}: ${bots.map((b) => `${b.id} (${b.mode}, ${b.handler})`).join(', ')}`);

  const master = await startMaster(cfg);
  say(`master started in this process (pid ${process.pid}, uid base ${uidBase} when bots get uids of their own)`);
  const snapshot = async () => (await controlRequest(p.socket, { cmd: 'status' })) as FleetStatus;
  const waitRunning = async (ids: string[], ms: number) => {
    const deadline = Date.now() + ms;
    for (;;) {
      const s = await snapshot();
      if (ids.every((id) => s.workers.find((w) => w.botId === id)?.state === 'running')) return s;
      if (Date.now() > deadline) throw new Error(`bots ${ids.join(', ')} were not all running within ${ms} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  /** Counters travel with heartbeats (every second here): wait until each bot shows its count. */
  const waitCounted = async (want: Record<string, number>) => {
    for (const deadline = Date.now() + 5000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 100))) {
      const s = await snapshot();
      if (Object.entries(want).every(([id, n]) => (s.workers.find((w) => w.botId === id)?.messages ?? 0) >= n)) return;
    }
  };
  try {
    await waitRunning(bots.map((b) => b.id), 20_000);
    say('all three workers are running');
    const chat = async (b: (typeof bots)[number], chatId: number, text: string) => {
      const before = b.tg.sent.length;
      emulator.userSends(b.tg, chatId, text);
      const reply = await emulator.waitForSent(b.tg, (m) => m.chat_id === chatId && b.tg.sent.indexOf(m) >= before, 10_000, `a reply to "${text}"`);
      console.log(`    user ${chatId} -> @${b.tg.username}: ${JSON.stringify(text)}   reply: ${JSON.stringify(reply.text)}`);
    };
    say('users chat with the bots');
    await chat(bots[0]!, 501, 'hello echo');
    await chat(bots[1]!, 502, '/start');
    await chat(bots[1]!, 502, 'what is the price?');
    await chat(bots[2]!, 503, 'hello over the webhook');
    await waitCounted({ echo: 1, faq: 2, hooked: 1 });
    console.log('\n' + statusTable(await snapshot()) + '\n');

    const victim = (await snapshot()).workers.find((w) => w.botId === 'echo')!;
    say(`kill -9 the echo worker (pid ${victim.pid}); the others keep running`);
    process.kill(victim.pid!, 'SIGKILL');
    const deadline = Date.now() + 20_000;
    let back;
    for (;;) {
      const w = (await snapshot()).workers.find((x) => x.botId === 'echo')!;
      if (w.state === 'running' && w.pid !== victim.pid) { back = w; break; }
      if (Date.now() > deadline) throw new Error('the echo worker did not come back within 20 s');
      await new Promise((r) => setTimeout(r, 50));
    }
    say(`echo is back: new pid ${back.pid}, last exit ${back.lastExit?.reason} (signal ${back.lastExit?.signal}), restarts ${back.restarts}`);
    await chat(bots[0]!, 501, 'are you there?');
    await chat(bots[2]!, 503, 'webhook bot still fine');
    await waitCounted({ echo: 1, hooked: 2 });
    console.log('\n' + statusTable(await snapshot()) + '\n');
  } finally {
    const pids = (await snapshot().catch(() => null))?.workers.map((w) => w.pid).filter((x): x is number => x !== null) ?? [];
    say('stopping: every worker drains and exits');
    await master.stop();
    await emulator.stop();
    fs.rmSync(home, { recursive: true, force: true });
    removeUidLock(uidBase);
    const left = pids.filter(processAlive);
    say(left.length === 0 ? `done: workers ${pids.join(', ')} have exited, nothing left running` : `workers still alive: ${left.join(', ')}`);
  }
}

// Run as a program (`botfleet demo` and `npm run demo` start it as its own process).
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  runDemo().catch((err: unknown) => {
    console.error(`demo failed: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  });
}

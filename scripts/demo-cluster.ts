/**
 * `botfleet demo --cluster`: the cluster offline, printed as it happens (docs/cluster.md). A
 * throwaway PostgreSQL from the machine's own binaries, the Bot API emulator, three masters
 * (each its own process and home, one member each), six bots (four long polling, two on
 * webhooks the emulator posts round-robin to every master, as a load balancer would), users
 * chatting, one master SIGKILLed and its bots answering again from the others, then a clean
 * stop. Short leases (3 s / 2 s / 0.5 s) keep it quick; everything it made is removed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { freePort } from '../common/free-port.js';
import { desiredOwner } from '../master/cluster/rendezvous.js';
import { cgroupName } from '../master/host/bot-limits.js';
import { removeGroupsNamed } from '../master/host/cgroups.js';
import { removeUidLock } from '../master/host/uid-locks.js';
import { controlRequest } from '../master/surfaces/control-server.js';
import type { FleetStatus } from '../master/surfaces/status-server.js';
import { BotApiEmulator } from './emulator/emulator.js';
import type { EmulatedBot } from './emulator/bot-state.js';
import { postgresBinDir, POSTGRES_MISSING, startLocalPostgres } from './postgres.js';

const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url));
const bold = process.stdout.isTTY === true && !process.env.NO_COLOR;
const say = (s: string) => console.log(bold ? `\x1b[1m==>\x1b[0m ${s}` : `==> ${s}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One master of the demo: its member id, home, environment and process. */
interface Member { id: string; home: string; env: NodeJS.ProcessEnv; proc: ChildProcess | null; stderr: string }

/** Run the CLI with `env`; `input` on its stdin. @returns stdout. @throws on a non-zero exit */
async function cli(env: NodeJS.ProcessEnv, args: string[], input = ''): Promise<string> {
  const c = spawn(process.execPath, [CLI, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  c.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  c.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  c.stdin!.end(input);
  const [code] = (await once(c, 'close')) as [number | null];
  if (code !== 0) throw new Error(`botfleet ${args[0]} failed: ${err.trim()}`);
  return out;
}

/** Where each bot runs now, over the members still alive: bot -> member id. */
async function placement(members: Member[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const m of members) {
    if (!m.proc || m.proc.exitCode !== null || m.proc.signalCode !== null) continue;
    const s = (await controlRequest(path.join(m.home, 'run', 'botfleet.sock'), { cmd: 'status' }).catch(() => null)) as FleetStatus | null;
    for (const w of s?.workers ?? []) if (w.state === 'running') out.set(w.botId, m.id);
  }
  return out;
}

const count = (p: Map<string, string>, member: string) => [...p.values()].filter((x) => x === member).length;

/**
 * Until every bot of `ids` runs on the member of `memberIds` rendezvous hashing picks; `moved`
 * is told of each bot when it first runs on its new owner (ms since `since`). @throws after `ms`
 */
async function placed(members: Member[], ids: string[], memberIds: string[], ms: number, moved?: (id: string, member: string, ms: number) => void, since = Date.now()): Promise<Map<string, string>> {
  const seen = new Set<string>();
  for (const deadline = Date.now() + ms; ; await sleep(100)) {
    const gone = members.find((m) => m.proc && m.proc.exitCode !== null);
    if (gone) throw new Error(`master ${gone.id} exited (${gone.proc!.exitCode}): ${gone.stderr.trim().split('\n').pop()}`);
    const p = await placement(members);
    for (const id of ids) if (moved && !seen.has(id) && p.get(id) === desiredOwner(id, memberIds)) (seen.add(id), moved(id, p.get(id)!, Date.now() - since));
    if (ids.every((id) => p.get(id) === desiredOwner(id, memberIds))) return p;
    if (Date.now() > deadline) throw new Error(`not every bot was running on its member within ${ms} ms`);
  }
}

/** Run the cluster demo; resolves when everything it started has stopped. */
export async function runClusterDemo(): Promise<void> {
  if (postgresBinDir() === null) {
    console.error(`the cluster demo needs a local PostgreSQL server to start: ${POSTGRES_MISSING} (or apt-get install postgresql-15); the one-machine demo needs nothing: botfleet demo`);
    process.exitCode = 1;
    return;
  }
  const emulator = new BotApiEmulator({ webhookRetryMs: 200 });
  const apiRoot = await emulator.start();
  say(`Bot API emulator listening at ${apiRoot} (no network, no real token)`);
  const pg = await startLocalPostgres({ fsync: false });
  say(`PostgreSQL started from ${postgresBinDir()} on 127.0.0.1:${pg.port} (a throwaway server, removed at the end)`);
  const shared = {
    ...process.env, DATABASE_URL: pg.url, BOTFLEET_ENCRYPTION_KEY: crypto.randomBytes(32).toString('hex'), WEBHOOK_SECRET: crypto.randomBytes(24).toString('base64url'),
    TELEGRAM_API_ROOT: apiRoot, STATUS_PORT: '0', STATUS_HOST: '127.0.0.1', WEBHOOK_LISTEN_HOST: '127.0.0.1', POLLING_TIMEOUT_SEC: '2', WORKER_TIMEOUT_MS: '3000',
    CLUSTER_LEASE_MS: '3000', CLUSTER_RENEW_DEADLINE_MS: '2000', CLUSTER_RETRY_MS: '500', LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
  };
  const members: Member[] = [];
  for (const [i, id] of ['m0', 'm1', 'm2'].entries()) {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), `botfleet-demo-${id}-`));
    const port = await freePort();
    // Three masters on one machine: each its own range of per-bot uids (a master refuses a range another holds).
    const uidBase = String(2_000_000 + (process.pid % 10_000) * 100 + i * 30);
    members.push({ id, home, proc: null, stderr: '', env: { ...shared, BOTFLEET_HOME: home, MEMBER_ID: id, WORKER_UID_BASE: uidBase, WEBHOOK_PORT: String(port), WEBHOOK_HOST: `http://127.0.0.1:${port}` } });
  }
  const bots: Array<{ id: string; mode: 'polling' | 'webhook'; tg: EmulatedBot }> = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot'].map((id, i) => ({ id, mode: i < 4 ? 'polling' : 'webhook', tg: emulator.createBot(`${id}_demo_bot`) }));
  const origins = members.map((m) => `http://127.0.0.1:${m.env.WEBHOOK_PORT}`);
  try {
    for (const b of bots) {
      await cli(members[0]!.env, ['bots', 'add', '--id', b.id, '--name', b.id, '--token', '-', '--handler', 'echo', '--mode', b.mode], b.tg.token);
      if (b.mode === 'webhook') b.tg.balance = { origins, next: 0 };
    }
    say(`six bots added once, into PostgreSQL: ${bots.map((b) => `${b.id} (${b.mode})`).join(', ')}`);
    for (const m of members) {
      m.proc = spawn(process.execPath, [CLI, 'start'], { env: m.env, stdio: ['ignore', 'ignore', 'pipe'] });
      m.proc.stderr!.on('data', (d: Buffer) => (m.stderr = (m.stderr + d.toString()).slice(-2000)));
      say(`master ${m.id} started (pid ${m.proc.pid}, home ${m.home}, uid base ${m.env.WORKER_UID_BASE})`);
    }
    const ids = members.map((m) => m.id);
    const first = await placed(members, bots.map((b) => b.id), ids, 60_000);
    say('every bot runs on exactly one master, the one rendezvous hashing picks:');
    for (const m of members) console.log(`    ${m.id}: ${bots.filter((b) => first.get(b.id) === m.id).map((b) => b.id).join(', ') || '(none)'}`);
    const chat = async (b: (typeof bots)[number], chatId: number, text: string) => {
      const before = b.tg.sent.length;
      const at = Date.now();
      emulator.userSends(b.tg, chatId, text);
      const reply = await emulator.waitForSent(b.tg, (x) => x.chat_id === chatId && b.tg.sent.indexOf(x) >= before, 30_000, `a reply to "${text}"`);
      console.log(`    user ${chatId} -> @${b.tg.username}: ${JSON.stringify(text)}   reply: ${JSON.stringify(reply.text)} (${Date.now() - at} ms)`);
    };
    say('users chat with every bot (the webhook ones through any master)');
    for (const [i, b] of bots.entries()) await chat(b, 700 + i, `hello ${b.id}`);
    const victim = members.reduce((a, m) => (count(first, m.id) > count(first, a.id) ? m : a));
    const orphans = bots.filter((b) => first.get(b.id) === victim.id);
    say(`kill -9 master ${victim.id} (pid ${victim.proc!.pid}), which runs ${orphans.map((b) => b.id).join(', ')}`);
    const killedAt = Date.now();
    victim.proc!.kill('SIGKILL');
    const alive = members.filter((m) => m !== victim);
    const after = await placed(alive, bots.map((b) => b.id), alive.map((m) => m.id), 60_000, (id, member, ms) => void (orphans.some((b) => b.id === id) && console.log(`    ${id} running on ${member} ${ms} ms after the kill`)), killedAt);
    say(`the others took over within lease + retry + start: ${bots.map((b) => `${b.id} on ${after.get(b.id)}`).join(', ')}; users write to the moved bots`);
    const pending = orphans.map((b, i) => {
      const before = b.tg.sent.length;
      emulator.userSends(b.tg, 800 + i, `still there, ${b.id}?`);
      return emulator.waitForSent(b.tg, (x) => x.chat_id === 800 + i && b.tg.sent.indexOf(x) >= before, 30_000, 'a reply after the kill').then((m) => ({ b, m, ms: Date.now() - killedAt }));
    });
    for (const { b, m, ms } of await Promise.all(pending)) console.log(`    @${b.tg.username} answered ${JSON.stringify(m.text)} ${ms} ms after the kill`);
    console.log('\n' + (await cli(members.find((m) => m !== victim)!.env, ['cluster'])).trimEnd() + '\n');
  } finally {
    say('stopping: each master drains its bots, releases them and leaves');
    for (const m of members) if (m.proc && m.proc.exitCode === null && m.proc.signalCode === null) m.proc.kill('SIGTERM');
    await Promise.all(members.map((m) => (m.proc && m.proc.exitCode === null && m.proc.signalCode === null ? once(m.proc, 'exit') : null)));
    await emulator.stop();
    await pg.stop();
    for (const m of members) {
      if (!process.env.BOTFLEET_KEEP_TEST_HOMES) fs.rmSync(m.home, { recursive: true, force: true });
      // What the killed master could not remove: its bots' cgroups (empty now) and its uid range's lock file.
      removeGroupsNamed(cgroupName(path.resolve(m.home)));
      removeUidLock(m.env.WORKER_UID_BASE!, m.env);
    }
    say('done: masters, workers and PostgreSQL stopped, their directories removed');
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  runClusterDemo().catch((err: unknown) => {
    console.error(`cluster demo failed: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  });
}

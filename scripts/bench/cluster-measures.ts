/**
 * The cluster's figures (docs/cluster.md; `npm run bench -- --only cluster`): masters run by the
 * real CLI on one local PostgreSQL (fsync on), each its own home and member id, with the default
 * lease, renew deadline and retry (15 / 10 / 2 s).
 * - Hand-off after SIGKILL: from the kill until each of the dead master's bots runs on another
 *   member (p50, max), against its floor, lease + retry (the others cannot take a bot before its
 *   owner's lease has expired and they have looked).
 * - Hand-off after SIGTERM: from the signal until every bot of the leaving master runs elsewhere.
 * - Webhooks through a non-owner: the load posts 20 webhook bots' updates to the port of the
 *   master that does not own them (it journals, the owner delivers), against the same load on a
 *   single machine's master (SQLite, JOURNAL_SYNC=full), in alternating rounds of one run.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { homePaths } from '../../config/load.js';
import { webhookSecretToken } from '../../config/secrets.js';
import { freePort } from '../../common/free-port.js';
import { desiredOwner } from '../../master/cluster/rendezvous.js';
import { copyHomeToPg } from '../../master/store/copy.js';
import { controlRequest } from '../../master/surfaces/control-server.js';
import type { FleetStatus } from '../../master/surfaces/status-server.js';
import { startLocalPostgres } from '../postgres.js';
import { benchEnv, CLI, makeHome, NOOP_HANDLER, onCleanup, sleep, startCliMaster, startEmulator, terminate, track, type EmulatorProcess } from './harness.js';
import { fmt, summarize, type Row } from './stats.js';
import { runLoad } from './webhook-measures.js';

/** One member: its id, environment, process and status. */
interface Member { id: string; env: NodeJS.ProcessEnv; proc: ReturnType<typeof spawn>; status(): Promise<FleetStatus> }

/** Start `n` members of one cluster over the bots of `emu` (mode, handler), on `url`. */
async function startCluster(emu: EmulatorProcess, mode: 'polling' | 'webhook', n: number, url: string, extra: Record<string, string> = {}): Promise<Member[]> {
  const first = makeHome(emu, { mode, handler: NOOP_HANDLER });
  await copyHomeToPg(homePaths(first), undefined, url);
  const key = fs.readFileSync(homePaths(first).keyFile, 'utf8').trim();
  const members: Member[] = [];
  for (let i = 0; i < n; i++) {
    const home = i === 0 ? first : fs.mkdtempSync(path.join(path.dirname(first), 'botfleet-bench-member-'));
    if (i > 0) onCleanup(() => fs.rmSync(home, { recursive: true, force: true }));
    const port = await freePort();
    const env = { ...process.env, ...benchEnv(home, emu.apiRoot, { DATABASE_URL: url, BOTFLEET_ENCRYPTION_KEY: key, MEMBER_ID: `m${i}`, WEBHOOK_PORT: String(port), WEBHOOK_LISTEN_HOST: '127.0.0.1', WEBHOOK_HOST: `http://127.0.0.1:${port}`, ...extra }) };
    const proc = track(spawn(process.execPath, [CLI, 'start'], { env, stdio: 'ignore' }));
    onCleanup(() => terminate(proc));
    const socket = homePaths(home).socket;
    members.push({ id: `m${i}`, env, proc, status: () => controlRequest(socket, { cmd: 'status' }, 5000) as Promise<FleetStatus> });
  }
  return members;
}

/** bot -> member it runs on, over the members still alive. */
async function placement(members: Member[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const m of members) {
    if (m.proc.exitCode !== null || m.proc.signalCode !== null) continue;
    for (const w of (await m.status().catch(() => null))?.workers ?? []) if (w.state === 'running') out.set(w.botId, m.id);
  }
  return out;
}

/** Until each bot of `bots` runs on the member of `alive` the hash picks; `seen` gets each bot's first time there (ms since `t0`). */
async function settle(alive: Member[], bots: string[], ms: number, t0 = performance.now(), seen = new Map<string, number>()): Promise<Map<string, number>> {
  const ids = alive.map((m) => m.id);
  for (const deadline = performance.now() + ms; ; await sleep(20)) {
    const p = await placement(alive);
    for (const b of bots) if (!seen.has(b) && p.get(b) === desiredOwner(b, ids)) seen.set(b, performance.now() - t0);
    if (seen.size === bots.length) return seen;
    if (performance.now() > deadline) throw new Error(`${bots.length - seen.size} bots not placed within ${ms} ms`);
  }
}

/** Hand-off after SIGKILL and after SIGTERM, with the default timings, 3 members, `n` polling bots. */
async function handOffs(url: string, n: number): Promise<{ rows: Row[]; raw: object }> {
  const emu = await startEmulator(n);
  const members = await startCluster(emu, 'polling', 3, url);
  const bots = emu.bots.map((_, i) => `b${String(i).padStart(3, '0')}`);
  await settle(members, bots, 120_000);
  const first = await placement(members);
  const count = (id: string) => [...first.values()].filter((x) => x === id).length;
  const victim = members.reduce((a, m) => (count(m.id) > count(a.id) ? m : a));
  const moved = bots.filter((b) => first.get(b) === victim.id);
  const t0 = performance.now();
  victim.proc.kill('SIGKILL');
  const survivors = members.filter((m) => m !== victim);
  const kill = await settle(survivors, moved, 60_000, t0);
  const killMs = summarize([...kill.values()]);
  const second = await placement(survivors);
  const leaving = survivors[1]!;
  const fromLeaving = bots.filter((b) => second.get(b) === leaving.id);
  const t1 = performance.now();
  leaving.proc.kill('SIGTERM');
  const term = await settle([survivors[0]!], fromLeaving, 60_000, t1);
  const termMax = Math.max(...term.values());
  await Promise.all(members.map((m) => terminate(m.proc)));
  await emu.stop();
  const floor = 15_000 + 2_000; // CLUSTER_LEASE_MS + CLUSTER_RETRY_MS, the defaults
  return {
    rows: [
      { measure: `cluster hand-off after SIGKILL (${moved.length} bots, defaults 15/10/2 s): p50, max`, botfleet: `${fmt(killMs.median)} / ${fmt(killMs.max)} ms`, baseline: `lease + retry ${floor} ms`, ratio: killMs.max / floor, target: '<= 1.2 (lease + retry + start)', ok: killMs.max / floor <= 1.2 },
      { measure: `cluster hand-off after SIGTERM (${fromLeaving.length} bots): all running elsewhere`, botfleet: `${fmt(termMax)} ms`, baseline: '-', ratio: null, target: '<= ~2 s', ok: termMax <= 3000 },
    ],
    raw: { sigkill: { bots: moved.length, ms: [...kill.values()] }, sigterm: { bots: fromLeaving.length, ms: [...term.values()] } },
  };
}

/** Webhooks of 20 bots posted to the master that does not own them, against a single machine's master, `rounds` alternating rounds of `seconds`. */
async function throughNonOwner(url: string, seconds: number, rounds: number): Promise<{ rows: Row[]; raw: object }> {
  const emu = await startEmulator(40);
  const members = await startCluster(emu, 'webhook', 2, url);
  const bots = emu.bots.map((_, i) => `b${String(i).padStart(3, '0')}`);
  await settle(members, bots, 120_000);
  // The bots m0 owns, posted to m1's port (20 of them).
  const owned = bots.filter((b) => desiredOwner(b, ['m0', 'm1']) === 'm0').slice(0, 20);
  const soloEmu = await startEmulator(owned.length);
  const soloHome = makeHome(soloEmu, { mode: 'webhook', handler: NOOP_HANDLER });
  const soloPort = await freePort();
  const solo = await startCliMaster(benchEnv(soloHome, soloEmu.apiRoot, { WEBHOOK_HOST: `http://127.0.0.1:${soloPort}`, WEBHOOK_PORT: String(soloPort), WEBHOOK_LISTEN_HOST: '127.0.0.1' }), owned.length);
  const secretOf = (id: string) => webhookSecretToken('bench-secret', id);
  const nonOwner = { url: `http://127.0.0.1:${members[1]!.env.WEBHOOK_PORT}`, bots: owned.map((id) => ({ id, secret: secretOf(id) })) };
  const single = { url: `http://127.0.0.1:${soloPort}`, bots: soloEmu.bots.map((_, i) => `b${String(i).padStart(3, '0')}`).map((id) => ({ id, secret: secretOf(id) })) };
  const ratios: number[] = [];
  const rps = { cluster: [] as number[], single: [] as number[] };
  await runLoad(nonOwner.url, nonOwner.bots, 1);
  await runLoad(single.url, single.bots, 1);
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? (['single', 'cluster'] as const) : (['cluster', 'single'] as const);
    const got: Record<string, number> = {};
    for (const side of order) got[side] = (await runLoad(side === 'single' ? single.url : nonOwner.url, (side === 'single' ? single : nonOwner).bots, seconds)).rps;
    rps.cluster.push(got.cluster!);
    rps.single.push(got.single!);
    ratios.push(got.cluster! / got.single!);
  }
  await solo.master.stop();
  await Promise.all(members.map((m) => terminate(m.proc)));
  await emu.stop();
  await soloEmu.stop();
  const ratio = summarize(ratios).median;
  return {
    rows: [{ measure: 'webhooks through a non-owner master (cluster on PostgreSQL) vs one master (SQLite, full)', botfleet: `${fmt(summarize(rps.cluster).median)} upd/s`, baseline: `${fmt(summarize(rps.single).median)} upd/s`, ratio, target: 'reported (a database commit and a NOTIFY hop)', ok: true }],
    raw: { rounds: ratios.length, ratios, rps },
  };
}

/** The cluster group: a PostgreSQL of its own for each part. */
export async function clusterMeasures(quick: boolean): Promise<{ rows: Row[]; raw: object }> {
  const pgA = await startLocalPostgres({ fsync: true });
  onCleanup(() => pgA.stop());
  const handOff = await handOffs(pgA.url, quick ? 6 : 12);
  await pgA.stop();
  const pgB = await startLocalPostgres({ fsync: true });
  onCleanup(() => pgB.stop());
  const web = await throughNonOwner(pgB.url, quick ? 2 : 3, quick ? 3 : 7);
  await pgB.stop();
  return { rows: [...handOff.rows, ...web.rows], raw: { handOff: handOff.raw, webhook: web.raw } };
}

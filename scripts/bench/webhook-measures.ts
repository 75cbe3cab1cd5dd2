/**
 * Measures 4 and 8: the webhook path under load (autocannon, 20 webhook bots)
 * against two same-run baselines, then with the `echo` handler replying through
 * the emulator; and the sustained rate against the seed's 450,000 jobs a day.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { webhookSecretToken } from '../../config/secrets.js';
import { freePort } from '../../common/free-port.js';
import { spawnBaseline } from './baseline-server.js';
import { benchEnv, makeHome, NOOP_HANDLER, startCliMaster, startEmulator, track } from './harness.js';
import { fmt, summarize, type Row } from './stats.js';

const LOAD = fileURLToPath(new URL('./load.js', import.meta.url));
const SEED_JOBS_PER_DAY = 450_000;
/** Length of the discarded warm-up load on each side, seconds. */
const WARMUP_SECONDS = 2;

interface Load { rps: number; p50: number; p99: number; non2xx: number; total: number }

/** Each load run gets its own update_id range: a repeated id would be dropped by a worker's dedup window, not handled. */
let nextUpdateId = 1;
const IDS_PER_RUN = 10_000_000;

async function load(url: string, bots: Array<{ id: string; secret: string }>, seconds: number): Promise<Load> {
  const firstUpdateId = nextUpdateId;
  nextUpdateId += IDS_PER_RUN;
  const p = track(spawn(process.execPath, [LOAD, JSON.stringify({ url, bots, seconds, connections: 40, firstUpdateId })], { stdio: ['ignore', 'pipe', 'inherit'] }));
  let out = '';
  p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  await once(p, 'exit');
  return JSON.parse(out.trim().split('\n').pop()!) as Load;
}

/**
 * botfleet's webhook path: 20 webhook bots with `handler`, under a master run by the
 * real CLI in its own process (as deployed). Each baseline has a process of its own
 * too: sides sharing a heap made whichever ran second pay the other's GC.
 */
async function startBotfleetPath(handler: string, extraEnv: Record<string, string> = {}): Promise<{ url: string; bots: Array<{ id: string; secret: string }>; stop(): Promise<void> }> {
  const emu = await startEmulator(20);
  const home = makeHome(emu, { mode: 'webhook', handler });
  const port = await freePort();
  const env = benchEnv(home, emu.apiRoot, { WEBHOOK_HOST: `http://127.0.0.1:${port}`, WEBHOOK_PORT: String(port), WEBHOOK_LISTEN_HOST: '127.0.0.1', ...extraEnv });
  const ids = emu.bots.map((_, i) => `b${String(i).padStart(3, '0')}`);
  const { master } = await startCliMaster(env, ids.length);
  return {
    url: `http://127.0.0.1:${port}`,
    bots: ids.map((id) => ({ id, secret: webhookSecretToken('bench-secret', id) })),
    stop: async () => {
      await master.stop();
      await emu.stop();
    },
  };
}

const median = (xs: number[]) => summarize(xs).median;
const medianLoad = (ls: Load[]): Load => ({ rps: median(ls.map((l) => l.rps)), p50: median(ls.map((l) => l.p50)), p99: median(ls.map((l) => l.p99)), non2xx: ls.reduce((n, l) => n + l.non2xx, 0), total: ls.reduce((n, l) => n + l.total, 0) });

/**
 * Measures 4 and 8. The machine's speed drifts by 2-3x within minutes, so the
 * servers stay up together and load rounds pair baseline and botfleet, in
 * rotating order; the ratio is the median of the per-round ratios. `withOther`
 * adds the same fleet under SCHED_OTHER as a third side (full runs; `--quick`
 * leaves it out to stay under 2 minutes).
 */
export async function webhookMeasures(seconds: number, rounds: number, withOther: boolean): Promise<{ rows: Row[]; raw: object }> {
  const alone = await spawnBaseline('alone', 0);
  const ipc = await spawnBaseline('ipc', 20);
  const ours = await startBotfleetPath(NOOP_HANDLER);
  // The same fleet with workers under SCHED_OTHER: what the default WORKER_SCHED_POLICY=batch is worth.
  const other = withOther ? await startBotfleetPath(NOOP_HANDLER, { WORKER_SCHED_POLICY: 'other' }) : null;
  const ipcBots = ipc.botIds.map((id) => ({ id, secret: '' }));
  type SideKey = 'baseline' | 'ours' | 'other';
  const sides: Array<{ key: SideKey; url: string; bots: Array<{ id: string; secret: string }> }> = [
    { key: 'baseline', url: ipc.url, bots: ipcBots }, { key: 'ours', url: ours.url, bots: ours.bots },
    ...(other ? [{ key: 'other' as const, url: other.url, bots: other.bots }] : []),
  ];
  // One discarded warm-up load per side first, so no measured round pays a cold JIT (autocannon's --warmup practice).
  for (const { url, bots } of [{ url: alone.url, bots: ipcBots }, ...sides]) await load(url, bots, WARMUP_SECONDS);
  const runs: Array<Record<'alone' | 'baseline' | 'ours', Load> & { other?: Load }> = [];
  // The order rotates each round, so each side runs in each position equally often:
  // measured here, a side's position within a round biases it.
  for (let i = 0; i < rounds; i++) {
    const run = { alone: await load(alone.url, ipcBots, seconds) } as (typeof runs)[number];
    for (let j = 0; j < sides.length; j++) {
      const side = sides[(i + j) % sides.length]!;
      run[side.key] = await load(side.url, side.bots, seconds);
    }
    runs.push(run);
  }
  await other?.stop();
  await ours.stop();
  const echoPath = await startBotfleetPath('echo');
  await load(echoPath.url, echoPath.bots, WARMUP_SECONDS);
  const echoRuns: Array<{ baseline: Load; echo: Load }> = [];
  for (let i = 0; i < Math.max(1, Math.floor(rounds / 2)); i++) {
    if (i % 2 === 0) echoRuns.push({ baseline: await load(ipc.url, ipcBots, seconds), echo: await load(echoPath.url, echoPath.bots, seconds) });
    else {
      const echo = await load(echoPath.url, echoPath.bots, seconds);
      echoRuns.push({ echo, baseline: await load(ipc.url, ipcBots, seconds) });
    }
  }
  await echoPath.stop();
  await ipc.stop();
  await alone.stop();

  const ratio = median(runs.map((r) => r.ours.rps / r.baseline.rps));
  const otherRuns = runs.filter((r): r is (typeof runs)[number] & { other: Load } => r.other !== undefined);
  const echoRatio = median(echoRuns.map((r) => r.echo.rps / r.baseline.rps));
  const [a, b, o, e] = [medianLoad(runs.map((r) => r.alone)), medianLoad(runs.map((r) => r.baseline)), medianLoad(runs.map((r) => r.ours)), medianLoad(echoRuns.map((r) => r.echo))];
  const us = (l: Load) => 1e6 / l.rps;
  const line = (l: Load) => `${fmt(l.rps, 0)} upd/s, p50 ${l.p50} ms, p99 ${l.p99} ms${l.non2xx ? `, ${l.non2xx} non-2xx` : ''}`;
  const seedRate = SEED_JOBS_PER_DAY / 86_400;
  const rows: Row[] = [
    { measure: `4. webhook fan-out, 20 bots, ack without reply (${rounds} paired rounds)`, botfleet: line(o), baseline: `${line(b)} (fastify + IPC + ack)`, ratio, target: '>= 0.8', ok: ratio >= 0.8 && o.non2xx === 0 },
    ...(otherRuns.length ? [{ measure: '4. the same, workers under SCHED_OTHER (WORKER_SCHED_POLICY=other)', botfleet: line(medianLoad(otherRuns.map((r) => r.other))), baseline: 'as above', ratio: median(otherRuns.map((r) => r.other.rps / r.baseline.rps)), target: 'shown', ok: null }] : []),
    { measure: '4. where the time goes (µs per update at saturation)', botfleet: `botfleet ${fmt(us(o), 0)}`, baseline: `fastify alone ${fmt(us(a), 0)} (parse+routing), +IPC+ack ${fmt(us(b) - us(a), 0)}, +botfleet ${fmt(us(o) - us(b), 0)}`, ratio: null, target: '-', ok: null },
    { measure: '4. webhook fan-out, echo replying via the emulator', botfleet: line(e), baseline: line(medianLoad(echoRuns.map((r) => r.baseline))), ratio: echoRatio, target: 'shown', ok: e.non2xx === 0 ? null : false },
    { measure: '8. sustained rate vs the seed (450,000 jobs/day)', botfleet: `${fmt(o.rps, 0)} upd/s (echo ${fmt(e.rps, 0)})`, baseline: `${fmt(seedRate, 2)} /s`, ratio: e.rps / seedRate, target: '>= 1', ok: e.rps / seedRate >= 1 },
  ];
  return { rows, raw: { runs, echoRuns } };
}

/**
 * Measure 7: against PM2, side by side. The same 50 trivial workers (the bare
 * library child) under PM2 (fork mode, wait_ready) and 50 botfleet bots (noop
 * handler, long polling the emulator) under a botfleet master run by the real CLI:
 * time from nothing (PM2's daemon spawned by connect; botfleet's master by the CLI)
 * until all are online, SIGKILL recovery, and the resident memory of PM2's
 * daemon vs botfleet's master. PM2 gets its own PM2_HOME in a temp dir and its
 * daemon is killed afterwards. Ratios are botfleet / PM2; the goal is below 1.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BARE_CHILD, benchEnv, makeHome, NOOP_HANDLER, onCleanup, rssBytes, sleep, startCliMaster, startEmulator } from './harness.js';
import { fmt, fmtSummary, summarize, type Row } from './stats.js';

const N = 50;

type Pm2 = typeof import('pm2');
const call = <T>(fn: (cb: (err: Error | null, r: T) => void) => void) => new Promise<T>((resolve, reject) => fn((err, r) => (err ? reject(err) : resolve(r))));

async function pm2Side(kills: number): Promise<{ startMs: number; recovery: number[]; daemonRss: number }> {
  const pm2Home = fs.mkdtempSync(path.join(os.tmpdir(), 'botfleet-bench-pm2-'));
  process.env.PM2_HOME = pm2Home;
  const pm2 = ((await import('pm2')) as unknown as { default: Pm2 }).default;
  let killed = false;
  const killDaemon = async () => {
    if (killed) return;
    killed = true;
    await call((cb) => pm2.killDaemon(cb as never)).catch(() => undefined);
    pm2.disconnect();
    try {
      process.kill(Number(fs.readFileSync(path.join(pm2Home, 'pm2.pid'), 'utf8')), 'SIGKILL');
    } catch {
      // already gone
    }
  };
  // PM2's client may still look for its home after disconnecting: remove it only at exit.
  process.once('exit', () => fs.rmSync(pm2Home, { recursive: true, force: true }));
  onCleanup(killDaemon);
  // Both sides start from nothing: PM2's clock includes spawning its daemon, as botfleet's includes its master.
  const t0 = performance.now();
  await call((cb) => pm2.connect(cb as never));
  await Promise.all(Array.from({ length: N }, (_, i) => call((cb) => pm2.start({ script: BARE_CHILD, name: `bare${i}`, env: { BENCH_PM2: '1' }, wait_ready: true, listen_timeout: 20_000, autorestart: true, restart_delay: 0 } as never, cb as never))));
  const online = async () => ((await call<Array<{ pm2_env?: { status?: string } }>>((cb) => pm2.list(cb as never))).filter((p) => p.pm2_env?.status === 'online').length);
  while ((await online()) < N) await sleep(20);
  const startMs = performance.now() - t0;
  const recovery: number[] = [];
  for (let i = 0; i < kills; i++) {
    const desc = async () => (await call<Array<{ pid?: number; pm2_env?: { status?: string } }>>((cb) => pm2.describe(`bare${i}`, cb as never)))[0]!;
    const old = (await desc()).pid!;
    const t = performance.now();
    process.kill(old, 'SIGKILL');
    for (;;) {
      const d = await desc();
      if (d.pid && d.pid !== old && d.pm2_env?.status === 'online') break;
      await sleep(10);
    }
    recovery.push(performance.now() - t);
  }
  const daemonRss = rssBytes(Number(fs.readFileSync(path.join(pm2Home, 'pm2.pid'), 'utf8')));
  await killDaemon();
  return { startMs, recovery, daemonRss };
}

async function botfleetSide(kills: number): Promise<{ startMs: number; recovery: number[]; masterRss: number }> {
  const emu = await startEmulator(N);
  const home = makeHome(emu, { mode: 'polling', handler: NOOP_HANDLER });
  const { master, ms: startMs } = await startCliMaster(benchEnv(home, emu.apiRoot), N);
  const recovery: number[] = [];
  for (let i = 0; i < kills; i++) {
    const id = `b${String(i).padStart(3, '0')}`;
    const old = (await master.status()).workers.find((w) => w.botId === id)!.pid!;
    const t = performance.now();
    process.kill(old, 'SIGKILL');
    for (;;) {
      const w = (await master.status()).workers.find((x) => x.botId === id)!;
      if (w.pid && w.pid !== old && w.state === 'running') break;
      await sleep(10);
    }
    recovery.push(performance.now() - t);
  }
  const masterRss = rssBytes(master.process.pid!);
  await master.stop();
  await emu.stop();
  return { startMs, recovery, masterRss };
}

export async function pm2Measures(kills: number): Promise<{ rows: Row[]; raw: object }> {
  const pm = await pm2Side(kills);
  const bf = await botfleetSide(kills);
  const pr = summarize(pm.recovery);
  const br = summarize(bf.recovery);
  const mb = (b: number) => `${fmt(b / 1048576)} MB`;
  return {
    raw: { pm2: pm, botfleet: bf },
    rows: [
      { measure: `7. vs PM2: ${N} workers started, all online`, botfleet: `${fmt(bf.startMs, 0)} ms`, baseline: `PM2 ${fmt(pm.startMs, 0)} ms`, ratio: bf.startMs / pm.startMs, target: '< 1', ok: bf.startMs < pm.startMs },
      { measure: `7. vs PM2: SIGKILL -> back online, ${kills}x`, botfleet: fmtSummary(br, 'ms'), baseline: `PM2 ${fmtSummary(pr, 'ms')}`, ratio: br.median / pr.median, target: '< 1', ok: br.median < pr.median },
      { measure: `7. vs PM2: daemon RSS at ${N} workers`, botfleet: `master ${mb(bf.masterRss)}`, baseline: `PM2 daemon ${mb(pm.daemonRss)}`, ratio: bf.masterRss / pm.daemonRss, target: '< 1', ok: bf.masterRss < pm.daemonRss },
    ],
  };
}

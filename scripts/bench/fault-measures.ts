/**
 * Measure 6: fault detection against its configured bound.
 * - hung: a busy loop (no heartbeat) is killed within HEARTBEAT_TIMEOUT_MS of the
 *   fault; the overshoot beyond it must be under one heartbeat interval.
 * - memory: a 20 MB/s leak is restarted after its RSS crosses the cap; with one
 *   sample every MEMORY_CHECK_INTERVAL_MS and two samples over required (the
 *   second a quarter interval after the first), the overshoot beyond one interval
 *   must be under one interval.
 * Each repetition uses its own bot (a fault update is a poison candidate).
 */
import { benchEnv, makeHome, MISBEHAVE_HANDLER, nextTransition, privateBytes, sleep, startEmulator, startFleetIn } from './harness.js';
import { fmt, fmtSummary, summarize, type Row } from './stats.js';

const HEARTBEAT_INTERVAL_MS = 1000;
const HEARTBEAT_TIMEOUT_MS = 3000;
const CHECK_INTERVAL_MS = 1000;
const CAP_MB = 150;
/** The leak's clock starts at this share of the cap. */
const NEAR_CAP = 0.9;

/** Send `text` as a user, through the emulator process's test route. */
async function userSends(apiRoot: string, botId: number, text: string): Promise<void> {
  const res = await fetch(`${apiRoot}/_emulator/bots/${botId}/messages`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ chat_id: 7, text }) });
  if (!res.ok) throw new Error(`emulator refused the message: ${res.status}`);
}

export async function faultMeasures(reps: number): Promise<{ rows: Row[]; raw: object }> {
  const emu = await startEmulator(reps * 2);
  const home = makeHome(emu, { mode: 'polling', handler: MISBEHAVE_HANDLER });
  const ids = emu.bots.map((_, i) => `b${String(i).padStart(3, '0')}`);
  const env = benchEnv(home, emu.apiRoot, {
    HEARTBEAT_INTERVAL_MS: String(HEARTBEAT_INTERVAL_MS), HEARTBEAT_TIMEOUT_MS: String(HEARTBEAT_TIMEOUT_MS),
    MEMORY_CHECK_INTERVAL_MS: String(CHECK_INTERVAL_MS), MAX_MEMORY_PER_WORKER_MB: String(CAP_MB), POLLING_TIMEOUT_SEC: '5',
  });
  const { master } = await startFleetIn(env, ids);
  await sleep(1500);
  const hung: number[] = [];
  const leak: number[] = [];
  for (let i = 0; i < reps; i++) {
    const id = ids[i]!;
    const killed = nextTransition(master, (e) => e.botId === id && e.to === 'backoff', 20_000, `bot ${id} killed as hung`);
    const t0 = performance.now();
    await userSends(emu.apiRoot, emu.bots[i]!.id, 'busy');
    await killed;
    hung.push(performance.now() - t0);
  }
  for (let i = reps; i < reps * 2; i++) {
    const id = ids[i]!;
    const pid = master.supervisor.status().find((w) => w.botId === id)!.pid!;
    // Killed at once (its cgroup, or the first sample over): running -> backoff, no drain.
    const restarted = nextTransition(master, (e) => e.botId === id && e.to === 'backoff', 30_000, `bot ${id} killed for memory`);
    let crossedAt = NaN;
    let done = false;
    void restarted.then(() => (done = true), () => (done = true));
    await userSends(emu.apiRoot, emu.bots[i]!.id, 'leak');
    while (!done) {
      // 90% of the cap, counted as the cap is (private memory: the cgroup's charge, or PSS), the kill coming at the cap itself.
      if (Number.isNaN(crossedAt) && privateBytes(pid) > NEAR_CAP * CAP_MB * 1048576) crossedAt = performance.now();
      await sleep(10);
    }
    const at = performance.now();
    await restarted;
    leak.push(at - crossedAt);
  }
  await master.stop();
  await emu.stop();
  const h = summarize(hung);
  const l = summarize(leak);
  const hungOver = h.max - HEARTBEAT_TIMEOUT_MS;
  const leakOver = l.max - CHECK_INTERVAL_MS;
  return {
    raw: { hungMs: hung, leakAfterCrossingMs: leak },
    rows: [
      { measure: `6. hung (busy loop) -> killed, ${reps}x`, botfleet: fmtSummary(h, 'ms'), baseline: `bound ${HEARTBEAT_TIMEOUT_MS} ms (heartbeat timeout)`, ratio: h.max / HEARTBEAT_TIMEOUT_MS, target: `overshoot < ${HEARTBEAT_INTERVAL_MS} ms`, ok: hungOver < HEARTBEAT_INTERVAL_MS },
      { measure: `6. leak 20 MB/s -> killed after reaching 90% of ${CAP_MB} MB, ${reps}x`, botfleet: fmtSummary(l, 'ms'), baseline: `bound ${CHECK_INTERVAL_MS} ms (check interval; the last 10% takes ~750 ms)`, ratio: l.max / CHECK_INTERVAL_MS, target: `overshoot < ${CHECK_INTERVAL_MS} ms`, ok: leakOver < CHECK_INTERVAL_MS },
    ].map((r) => ({ ...r, botfleet: `${r.botfleet}; worst overshoot ${fmt(r.measure.includes('hung') ? hungOver : leakOver, 0)} ms` })),
  };
}

/**
 * Measure 10: what the status page's live stream costs the master (target: 100 connected
 * clients < 5% of a core at 100 bots). A real master (`botfleet start`) with 100 polling
 * bots; its CPU (utime + stime from /proc/<pid>/stat) over a window with no client is the
 * baseline, then again with 100 `GET /api/events` clients reading every snapshot.
 */
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { BENCH_STATUS_HEADERS, benchEnv, makeHome, NOOP_HANDLER, sleep, startCliMaster, startEmulator } from './harness.js';
import { fmt, type Row } from './stats.js';

/** Clock ticks per second of /proc's CPU times (USER_HZ, 100 on Linux). */
const USER_HZ = 100;

/** CPU seconds the process has used (user + system). */
function cpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / USER_HZ; // fields 14 and 15 (utime, stime), counted from after the name
}

/** The master's CPU share of one core (%) over `ms`. */
async function cpuPercent(pid: number, ms: number): Promise<number> {
  const c0 = cpuSeconds(pid);
  const t0 = performance.now();
  await sleep(ms);
  return ((cpuSeconds(pid) - c0) / ((performance.now() - t0) / 1000)) * 100;
}

/** `n` event-stream clients; resolves once every one has had its first snapshot. */
async function openClients(port: number, n: number): Promise<{ bytes(): number; close(): void }> {
  let bytes = 0;
  const reqs: http.ClientRequest[] = [];
  await Promise.all(Array.from({ length: n }, () => new Promise<void>((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/api/events', agent: false, headers: BENCH_STATUS_HEADERS }, (res) => {
      if (res.statusCode !== 200) reject(new Error(`event stream answered ${res.statusCode}`));
      let first = true;
      res.on('data', (d: Buffer) => {
        bytes += d.length;
        if (first && d.includes('event: snapshot')) {
          first = false;
          resolve();
        }
      });
      res.on('error', () => {});
    });
    req.on('error', reject);
    reqs.push(req);
  })));
  return { bytes: () => bytes, close: () => reqs.forEach((r) => r.destroy()) };
}

export async function statusPageMeasures(bots: number, clients: number, windowMs: number): Promise<{ rows: Row[]; raw: unknown }> {
  const emu = await startEmulator(bots);
  const home = makeHome(emu, { mode: 'polling', handler: NOOP_HANDLER });
  const { master } = await startCliMaster(benchEnv(home, emu.apiRoot), bots);
  const pid = master.process.pid!;
  const port = JSON.parse(fs.readFileSync(path.join(home, 'run', 'ports.json'), 'utf8')).status as number;
  await sleep(3000); // the start's own work settles
  const idle = await cpuPercent(pid, windowMs);
  const streams = await openClients(port, clients);
  await sleep(2000);
  const b0 = streams.bytes();
  const t0 = performance.now();
  const watched = await cpuPercent(pid, windowMs);
  const perClientBps = (streams.bytes() - b0) / ((performance.now() - t0) / 1000) / clients;
  streams.close();
  const cost = watched - idle;
  return {
    rows: [{
      measure: `10. ${clients} status-page streams at ${bots} bots: master CPU`, botfleet: `${fmt(watched)}% of a core (${fmt(perClientBps / 1024)} KiB/s a client)`,
      baseline: `${fmt(idle)}% with no client`, ratio: idle > 0 ? watched / idle : null, target: '+ < 5% of a core', ok: cost < 5,
    }],
    raw: { bots, clients, windowMs, idlePercent: idle, watchedPercent: watched, costPercent: cost, perClientBps },
  };
}

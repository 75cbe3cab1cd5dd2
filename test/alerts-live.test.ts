/**
 * The shipped alerts against a live master, end to end: a real Prometheus server
 * (Debian's `prometheus`, installed by .ci/run) scrapes a real fleet every second with
 * monitoring/alerts.yml loaded; one bot crashes three times, another hangs once. The
 * first hang and the third crash must each fire their alert (a counter series appearing
 * only at its first event used to hide both), and the quiet neighbour must fire none.
 * The transcript (`t.diagnostic`) is the one quoted in docs/metrics.md.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { FIXTURES, withFleet } from './helpers/fleet.js';
import { waitFor } from './helpers/wait.js';
import { which } from './helpers/tools.js';
import { freePort } from '../common/free-port.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const MISBEHAVE = path.join(FIXTURES, 'misbehave.js');
const prometheus = which('prometheus');

interface Alert { labels: Record<string, string>; state: string }

test('a real Prometheus fires BotfleetCrashLooping on the third crash and BotfleetWorkerHung on the first hang', { skip: prometheus ? false : 'prometheus not installed (.ci/run installs Debian\'s prometheus package)' }, async (t) => {
  const started = Date.now();
  const say = (line: string) => t.diagnostic(`+${((Date.now() - started) / 1000).toFixed(1)} s  ${line}`);
  await withFleet({}, {}, async (fleet) => {
    await fleet.addBot('looper', { handler: MISBEHAVE });
    await fleet.addBot('sleeper', { handler: MISBEHAVE });
    await fleet.addBot('calm');
    await fleet.startMaster();
    await fleet.waitRunning(['looper', 'sleeper', 'calm']);
    const { status } = JSON.parse(fs.readFileSync(path.join(fleet.home, 'run', 'ports.json'), 'utf8')) as { status: number };
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'botfleet-test-prom-'));
    const port = await freePort();
    fs.writeFileSync(path.join(dir, 'prometheus.yml'), [
      'global: { scrape_interval: 1s, evaluation_interval: 1s }',
      `rule_files: [${JSON.stringify(path.join(ROOT, 'monitoring', 'alerts.yml'))}]`,
      'scrape_configs:',
      '  - job_name: botfleet',
      `    authorization: { credentials_file: ${JSON.stringify(path.join(fleet.home, 'data', 'status.token'))} }`,
      `    static_configs: [{ targets: ["127.0.0.1:${status}"] }]`,
    ].join('\n'));
    const prom = spawn(prometheus!, [`--config.file=${path.join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${path.join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`], { stdio: ['ignore', 'ignore', 'pipe'] });
    let promLog = '';
    prom.stderr!.on('data', (d: Buffer) => (promLog = (promLog + d.toString()).slice(-4000)));
    const api = async <T>(p: string): Promise<T> => ((await (await fetch(`http://127.0.0.1:${port}${p}`, { signal: AbortSignal.timeout(5000) })).json()) as { data: T }).data;
    try {
      await waitFor(async () => {
        const r = await api<{ result: Array<{ value: [number, string] }> }>('/api/v1/query?query=' + encodeURIComponent('up{job="botfleet"}')).catch(() => null);
        return r?.result[0]?.value[1] === '1';
      }, 30_000, `Prometheus scraping the master (${promLog})`);
      say('Prometheus scrapes the master (job botfleet, every 1 s), alerts.yml loaded');
      for (let i = 1; i <= 3; i++) {
        const before = (await fleet.worker('looper'))!;
        fleet.emulator.userSends(fleet.tg('looper'), 100 + i, 'crash');
        await fleet.waitWorker('looper', (w) => w.pid !== before.pid && (w.lastExit?.reason === 'crash') && w.restarts >= i, 20_000, `crash ${i}`);
        say(`looper crashed (${i})`);
      }
      fleet.emulator.userSends(fleet.tg('sleeper'), 200, 'busy');
      await fleet.waitWorker('sleeper', (w) => w.lastExit?.reason === 'hung', 20_000, 'the hang detected');
      say('sleeper killed as hung (its first hang)');
      const firing = (alerts: Alert[], name: string, bot: string) => alerts.some((a) => a.labels.alertname === name && a.labels.bot === bot && a.state === 'firing');
      const alerts = await waitFor(async () => {
        const a = (await api<{ alerts: Alert[] }>('/api/v1/alerts')).alerts;
        return firing(a, 'BotfleetCrashLooping', 'looper') && firing(a, 'BotfleetWorkerHung', 'sleeper') ? a : null;
      }, 30_000, 'both alerts firing');
      for (const a of alerts.filter((x) => x.state === 'firing')) say(`firing: ${a.labels.alertname}{bot="${a.labels.bot}"}`);
      assert.deepEqual(alerts.filter((a) => a.labels.bot === 'calm'), [], 'the quiet neighbour fires nothing');
    } finally {
      prom.kill('SIGTERM');
      await waitFor(() => prom.exitCode !== null || prom.signalCode !== null, 10_000, 'prometheus exiting').catch(() => prom.kill('SIGKILL'));
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

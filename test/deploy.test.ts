/**
 * The deployment files, tried with the real tools where this machine has them:
 * systemd-analyze verify and security on deploy/botfleet.service; the Dockerfile
 * read for what a container needs (hadolint too, where installed); the PM2 ecosystem
 * file run under PM2 (devDependency, private PM2_HOME): start, bots answer, a rolling
 * restart through `pm2 sendSignal SIGUSR2` keeps every bot answering, `pm2 stop`
 * leaves nothing, and a SIGKILLed PM2 daemon does not take the master down.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { withFleet, type Fleet } from './helpers/fleet.js';
import { which } from './helpers/tools.js';
import { SETTINGS } from '../config/settings.js';
import { alive, waitFor } from './helpers/wait.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const UNIT = path.join(ROOT, 'deploy', 'botfleet.service');

describe('systemd unit', { skip: which('systemd-analyze') ? false : 'systemd-analyze not installed' }, () => {
  test('systemd-analyze verify is clean', () => {
    const r = spawnSync('systemd-analyze', ['verify', UNIT], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr.trim(), '', 'no warnings');
  });

  test('systemd-analyze security scores 3.0 or less, with the drain, kill mode and start limit set', () => {
    const r = spawnSync('systemd-analyze', ['security', '--offline=yes', '--no-pager', UNIT], { encoding: 'utf8', timeout: 60_000 });
    const m = /Overall exposure level for botfleet\.service: (\d+\.\d+)/.exec(r.stdout);
    assert.ok(m, `${r.stdout}${r.stderr}`);
    assert.ok(Number(m[1]) <= 3.0, `exposure ${m[1]}`);
    const unit = fs.readFileSync(UNIT, 'utf8');
    const value = (key: string) => new RegExp(`^${key}=(.*)$`, 'm').exec(unit)?.[1];
    assert.equal(value('KillMode'), 'mixed');
    assert.ok(Number(value('TimeoutStopSec')) > 90, 'above the 90 s drain (WORKER_TIMEOUT_MS)');
    assert.ok(Number(value('StartLimitBurst')) > 0 && value('RestartPreventExitStatus') === '78', 'a bad configuration does not restart forever');
    assert.ok(Number(value('TasksMax')) >= 11 * 1000, 'about 11 threads per worker, 1000 workers (MAX_TOTAL_WORKERS)');
    assert.equal(value('ProtectSystem'), 'strict');
    assert.ok(Number(m[1]) <= 2.6, `exposure ${m[1]} (2.6 when it was last hardened)`);
    assert.match(value('ExecReload') ?? '', /dist\/cli\/main\.js restart$/, 'the reload waits for the rolling restart and fails when it fails');
    assert.equal(value('RuntimeDirectoryMode'), '1777', 'uid-range locks shared with other users\' masters');
  });

  test('botfleet startup systemd prints this installation\'s unit, which verifies and scores as the shipped one', async () => {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'botfleet-test-startup-'));
    try {
      const r = spawnSync(process.execPath, [path.join(ROOT, 'dist', 'cli', 'main.js'), 'startup', 'systemd', '--home', home, '--user', 'botfleet'], { encoding: 'utf8', timeout: 30_000 });
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`^ExecStart=${process.execPath} ${ROOT}/dist/cli/main\\.js start$`, 'm'));
      assert.match(r.stdout, new RegExp(`^Environment=BOTFLEET_HOME=${home}$`, 'm'));
      assert.match(r.stdout, new RegExp(`^ReadWritePaths=${home}$`, 'm'));
      assert.doesNotMatch(r.stdout, /\/opt\/botfleet|\/var\/lib\/botfleet/);
      const file = path.join(home, 'botfleet.service');
      fs.writeFileSync(file, r.stdout);
      const verify = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8', timeout: 60_000 });
      assert.equal(verify.status, 0, verify.stderr);
      const sec = spawnSync('systemd-analyze', ['security', '--offline=yes', '--no-pager', file], { encoding: 'utf8', timeout: 60_000 });
      assert.ok(Number(/Overall exposure level for botfleet\.service: (\d+\.\d+)/.exec(sec.stdout)?.[1]) <= 2.6, sec.stdout);
    } finally {
      fs.rmSync(home, { recursive: true, force: true });
    }
  });
});

describe('Kubernetes manifest', () => {
  const yaml = fs.readFileSync(path.join(ROOT, 'deploy', 'kubernetes.yaml'), 'utf8');
  test('a pinned image, the tested securityContext, scrapeable metrics behind auth, HTTP probes, an Ingress', () => {
    const version = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    assert.match(yaml, new RegExp(`image: botfleet:${version.replace(/\./g, '\\.')}\n\\s+imagePullPolicy: IfNotPresent`), 'the release, not :latest');
    assert.doesNotMatch(yaml, /image: \S+:latest/);
    assert.match(yaml, /capabilities:\n\s+drop: \[ALL\]\n\s+add: \[SETUID, SETGID, KILL, CHOWN\]/, 'the credentials test/credentials.test.ts runs');
    assert.match(yaml, /allowPrivilegeEscalation: false/);
    assert.match(yaml, /name: STATUS_HOST\n\s+value: 0\.0\.0\.0/, 'the status server reachable by Prometheus');
    assert.match(yaml, /STATUS_AUTH=bearer:/, 'and then authenticated');
    assert.match(yaml, /kind: ServiceMonitor[\s\S]*bearerTokenSecret/);
    assert.match(yaml, /prometheus\.io\/scrape: "true"/);
    assert.doesNotMatch(yaml, /exec:\n\s+command: \[node/, 'no node process per probe');
    assert.match(yaml, /readinessProbe:\n\s+httpGet: \{ path: \/health, port: status \}/);
    assert.match(yaml, /kind: Ingress[\s\S]*path: \/webhook\//);
  });
});

describe('Kubernetes manifest of a cluster', () => {
  const yaml = fs.readFileSync(path.join(ROOT, 'deploy', 'kubernetes', 'cluster.yaml'), 'utf8');
  test('N masters, the member id from the pod name, the database URL from a Secret, a PodDisruptionBudget, readiness from /health, a grace above the drain, one Service over every webhook port', () => {
    assert.match(yaml, /kind: Deployment[\s\S]*replicas: 3/);
    assert.match(yaml, /name: MEMBER_ID\n\s+valueFrom:\n\s+fieldRef: \{ fieldPath: metadata\.name \}/, 'the member id is the pod name');
    assert.match(yaml, /--from-literal=DATABASE_URL=/);
    assert.match(yaml, /envFrom:\n\s+- secretRef:\n\s+name: botfleet-cluster/);
    assert.doesNotMatch(yaml, /name: DATABASE_URL\n\s+value:/, 'never the database URL (with its password) in the manifest');
    assert.match(yaml, /kind: PodDisruptionBudget[\s\S]*maxUnavailable: 1/);
    assert.match(yaml, /readinessProbe:[^\n]*\n\s+httpGet: \{ path: \/health, port: status \}/);
    const grace = Number(/terminationGracePeriodSeconds: (\d+)/.exec(yaml)?.[1]);
    assert.ok(grace * 1000 > Number(SETTINGS.find((d) => d.key === 'workerTimeoutMs')!.default), `the grace period (${grace} s) above the drain`);
    assert.match(yaml, /kind: Service\nmetadata:\n\s+name: botfleet-webhook\nspec:\n\s+selector: \{ app: botfleet-cluster \}/);
    assert.match(yaml, /capabilities:\n\s+drop: \[ALL\]\n\s+add: \[SETUID, SETGID, KILL, CHOWN\]/, 'the credentials test/credentials.test.ts runs');
    assert.doesNotMatch(yaml, /PersistentVolumeClaim/, 'no volume per member: the state is in PostgreSQL');
  });
});

describe('Dockerfile', () => {
  const file = fs.readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
  test('what a container needs: a supported Node LTS (22) slim, production dependencies, an init, a volume, a health check, logs to stdout', () => {
    assert.match(file, /^FROM node:22-slim\b/m);
    assert.doesNotMatch(file, /node:20/, 'Node 20 reached its end of life in April 2026');
    assert.match(file, /npm (ci --omit=dev|prune --omit=dev)/);
    assert.match(file, /^ENTRYPOINT \["\/usr\/bin\/tini", "--"/m, 'tini as PID 1 reaps zombies');
    assert.match(file, /^VOLUME \["\/var\/lib\/botfleet"\]/m);
    assert.match(file, /^HEALTHCHECK .*\n.*127\.0\.0\.1:3001\/health/m);
    assert.match(file, /LOG_TO_STDOUT=1/);
    assert.match(file, /BOTFLEET_HOME=\/var\/lib\/botfleet/);
  });
  test('hadolint passes', { skip: which('hadolint') ? false : 'hadolint not installed' }, () => {
    const r = spawnSync('hadolint', ['--failure-threshold', 'warning', path.join(ROOT, 'Dockerfile')], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stdout);
  });
});

describe('PM2', () => {
  const require = createRequire(import.meta.url);
  const ecosystem = require(path.join(ROOT, 'ecosystem.config.cjs')) as { apps: Array<Record<string, unknown>> };
  const pm2Bin = path.join(ROOT, 'node_modules', 'pm2', 'bin', 'pm2');

  test('the ecosystem file: home outside the code, no watch, no memory restart, kill_timeout above the drain, no injected module', () => {
    const app = ecosystem.apps[0]!;
    assert.equal(app.watch, false);
    assert.equal(app.max_memory_restart, undefined);
    assert.ok(Number(app.kill_timeout) > 90_000);
    assert.equal(app.pmx, false);
    const home = (app.env as { BOTFLEET_HOME: string }).BOTFLEET_HOME;
    assert.ok(!path.resolve(home).startsWith(ROOT + path.sep) && path.resolve(home) !== ROOT, `home ${home} is outside the code`);
  });

  test('under PM2: bots answer, SIGUSR2 rolls them answering throughout, pm2 stop leaves nothing, a killed daemon leaves the master up', { skip: fs.existsSync(pm2Bin) ? false : 'pm2 not installed (npm ci)' }, async () => {
    await withFleet({}, {}, async (fleet) => {
      const pm2Home = fs.mkdtempSync(path.join(os.tmpdir(), 'botfleet-test-pm2-'));
      const env = { ...fleet.env, PM2_HOME: pm2Home };
      const pm2 = (...args: string[]) => spawnSync(process.execPath, [pm2Bin, ...args], { env, encoding: 'utf8', timeout: 60_000 });
      const daemonPid = () => Number(fs.readFileSync(path.join(pm2Home, 'pm2.pid'), 'utf8'));
      try {
        for (const id of ['p1', 'p2', 'p3']) await fleet.addBot(id);
        const started = pm2('start', path.join(ROOT, 'ecosystem.config.cjs'));
        assert.equal(started.status, 0, started.stderr);
        const first = await fleet.waitRunning(['p1', 'p2', 'p3'], 30_000);
        for (const id of ['p1', 'p2', 'p3']) assert.equal(await fleet.chat(id, 1, `hi ${id}`), `hi ${id}`);

        // The rolling path: every bot answers throughout, and each one got a new worker.
        assert.equal(pm2('sendSignal', 'SIGUSR2', 'botfleet').status, 0);
        const oldPids = new Map(first.workers.map((w) => [w.botId, w.pid]));
        let n = 0;
        await waitFor(async () => {
          for (const id of ['p1', 'p2', 'p3']) assert.equal(await fleet.chat(id, 2, `roll ${id} ${n}`, 10_000), `roll ${id} ${n}`);
          n++;
          const s = await fleet.status();
          return s.workers.every((w) => w.state === 'running' && w.pid !== oldPids.get(w.botId));
        }, 30_000, 'every bot rolled to a new worker');
        const master = (await fleet.status()).master.pid;

        // pm2 stop: the master drains and exits, no worker is left.
        const workers = (await fleet.status()).workers.map((w) => w.pid!);
        assert.equal(pm2('stop', 'botfleet').status, 0);
        await waitFor(() => !alive(master) && workers.every((p) => !alive(p)), 30_000, 'the master and its workers gone after pm2 stop');

        // A SIGKILLed PM2 daemon: the master (started again) stays up and its bots answer.
        assert.equal(pm2('start', 'botfleet').status, 0);
        const again = await fleet.waitRunning(['p1', 'p2', 'p3'], 30_000);
        process.kill(daemonPid(), 'SIGKILL');
        await waitFor(() => !alive(daemonPid()), 10_000, 'the PM2 daemon dead');
        // PM2's injected module (@pm2/io) sends metrics about every second and exits the app once the daemon is gone:
        // the master must outlive several of those sends.
        const since = (await fleet.status()).master.uptimeMs;
        await waitFor(async () => {
          assert.ok(alive(again.master.pid), 'the master outlived the PM2 daemon');
          return (await fleet.status()).master.uptimeMs >= since + 10_000;
        }, 20_000, 'ten seconds of master uptime after the daemon died');
        for (const id of ['p1', 'p2', 'p3']) assert.equal(await fleet.chat(id, 3, `after ${id}`), `after ${id}`);
        await stopOrphan(fleet, again.master.pid);
      } finally {
        spawnSync(process.execPath, [pm2Bin, 'kill'], { env, timeout: 30_000 });
        try {
          process.kill(daemonPid(), 'SIGKILL');
        } catch {
          // gone
        }
        fs.rmSync(pm2Home, { recursive: true, force: true });
      }
    });
  });
});

/** `botfleet stop` on a master nobody waits for, and its end checked. */
async function stopOrphan(fleet: Fleet, pid: number): Promise<void> {
  const r = await fleet.cli(['stop']);
  assert.equal(r.code, 0, r.stderr);
  await waitFor(() => !alive(pid), 30_000, 'the master stopped by botfleet stop');
}

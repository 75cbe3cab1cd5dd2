/**
 * The demos as a new user runs them (`botfleet demo`, `botfleet demo --cluster`): each exits 0,
 * prints what the README promises, and leaves nothing behind.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { CLI } from './helpers/fleet.js';
import { cgroupName } from '../master/host/bot-limits.js';
import { ownPath } from '../master/host/cgroups.js';
import { uidLockDir } from '../master/host/uid-locks.js';
import { postgresBinDir, POSTGRES_MISSING } from '../scripts/postgres.js';
import { processAlive } from '../master/host/pid-file.js';

/** Run `botfleet demo ...args`; @returns its exit code and output. */
function demo(args: string[]): { code: number | null; out: string } {
  const r = spawnSync(process.execPath, [CLI, 'demo', ...args], { encoding: 'utf8', timeout: 150_000, env: { ...process.env, NO_COLOR: '1' } });
  return { code: r.status, out: r.stdout + r.stderr };
}

test('botfleet demo: three bots, users, a worker SIGKILLed and back, a clean stop', { timeout: 180_000 }, () => {
  const { code, out } = demo([]);
  assert.equal(code, 0, out);
  assert.match(out, /all three workers are running/);
  assert.match(out, /echo is back: new pid \d+, last exit crash \(signal SIGKILL\)/);
  assert.match(out, /done: workers [\d, ]+ have exited, nothing left running/);
  const base = /uid base (\d+) when bots get uids/.exec(out)?.[1];
  assert.ok(base && base !== '61184', 'a throwaway uid range: a master on the default base keeps it');
  assert.equal(fs.existsSync(path.join(uidLockDir(), `uid-base-${base}.lock`)), false, 'its lock file removed after the demo');
});

test('botfleet demo --cluster: three masters on a throwaway PostgreSQL, one SIGKILLed, its bots answering again from the others', { skip: postgresBinDir() === null ? POSTGRES_MISSING : false, timeout: 180_000 }, (t) => {
  const { code, out } = demo(['--cluster']);
  assert.equal(code, 0, out);
  assert.match(out, /every bot runs on exactly one master, the one rendezvous hashing picks/);
  const victim = /kill -9 master (m\d) \(pid (\d+)\), which runs ([a-z, ]+)$/m.exec(out);
  assert.ok(victim, out);
  const orphans = victim[3]!.split(', ');
  for (const b of orphans) {
    assert.match(out, new RegExp(`${b} running on m\\d ${'\\d+'} ms after the kill`), `${b} taken over`);
    assert.match(out, new RegExp(`@${b}_demo_bot answered "still there, ${b}\\?"`), `${b} answering again`);
  }
  assert.ok(!new RegExp(`${orphans[0]} running on ${victim[1]}`).test(out), 'not on the killed master');
  assert.match(out, /MEMBER +EPOCH/, '`botfleet cluster` printed');
  assert.match(out, /done: masters, workers and PostgreSQL stopped/);
  assert.equal(processAlive(Number(victim[2])), false);
  // Nothing of the masters left on the machine, the killed one's included: no bot cgroup, no uid-range lock file.
  const masters = [...out.matchAll(/master m\d started \(pid \d+, home (\S+), uid base (\d+)\)/g)].map((m) => ({ home: m[1]!, base: m[2]! }));
  assert.equal(masters.length, 3, out);
  const self = fs.existsSync('/proc/self/cgroup') ? fs.readFileSync('/proc/self/cgroup', 'utf8') : '';
  for (const { home, base } of masters) {
    for (const hierarchy of ['memory', 'pids', '']) {
      const own = ownPath(self, hierarchy);
      const dir = own === null ? null : path.join('/sys/fs/cgroup', hierarchy, own, cgroupName(path.resolve(home)));
      assert.ok(dir === null || !fs.existsSync(dir), `${dir} left behind`);
    }
    assert.equal(fs.existsSync(path.join(uidLockDir(), `uid-base-${base}.lock`)), false, `the lock of uid base ${base} left behind`);
  }
  t.diagnostic(out.split('\n').filter((l) => /after the kill/.test(l)).join('; '));
});

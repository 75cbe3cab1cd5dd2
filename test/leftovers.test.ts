/**
 * What a worker leaves, and where it starts (master/host/proc.ts, privileges.ts): its exec
 * chain joins its cgroup and sets oom_score_adj before anything of the bot runs, and does not
 * start at all outside its group; at its exit the processes it left are ended from its
 * group's list (its own processes only) or, without a group, from one /proc listing of
 * every process of its uid. Real processes, real signals, real uids.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { killMembers, killUids } from '../master/host/proc.js';
import { JOIN_FAILED_EXIT, joinArgs, readCapabilities, WORKER_OOM_SCORE_ADJ } from '../master/host/privileges.js';
import { waitFor } from './helpers/wait.js';

const isRoot = process.getuid?.() === 0;
/** CAP_SYS_RESOURCE (capability(7) bit 24): writing oom_score_adj with it also sets the floor. Some VMs' root lacks it. */
const sysResource = (readCapabilities().effective & (1n << 24n)) !== 0n;
/** A uid nothing on these machines runs as (not nobody: a test's PostgreSQL runs as nobody). */
const SPARE_UID = 64_917;

const alive = (pid: number) => {
  try {
    const state = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    return !/^\S+ \(.*\) [ZX]/s.test(state);
  } catch {
    return false;
  }
};

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'bf-leftovers-'));
}

test('the joining shell writes its pid into each group file and oom_score_adj, then execs the rest as the same pid', () => {
  const dir = tmpDir();
  try {
    const files = [path.join(dir, 'a.procs'), path.join(dir, 'b.procs')];
    for (const f of files) fs.writeFileSync(f, '');
    const [cmd, ...args] = [...joinArgs(files), '/bin/sh', '-c', 'echo "$$ $(cat /proc/$$/oom_score_adj)"'];
    const r = spawnSync(cmd!, args, { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const [pid, adj] = r.stdout.trim().split(' ');
    assert.equal(adj, String(WORKER_OOM_SCORE_ADJ), 'oom_score_adj set before the exec');
    for (const f of files) assert.equal(fs.readFileSync(f, 'utf8').trim(), pid, `${path.basename(f)} holds the pid that ran the command`);
    if (isRoot && sysResource) {
      // Written with CAP_SYS_RESOURCE, the value is also the floor (proc(5) oom_score_adj_min): the bot's uid cannot lower it.
      const [c2, ...a2] = [...joinArgs(files), 'setpriv', `--reuid=${SPARE_UID}`, `--regid=${SPARE_UID}`, '--clear-groups', '/bin/sh', '-c', 'echo 0 > /proc/self/oom_score_adj; cat /proc/self/oom_score_adj'];
      const lowered = spawnSync(c2!, a2, { encoding: 'utf8' });
      assert.equal(lowered.stdout.trim(), String(WORKER_OOM_SCORE_ADJ), `the bot's uid could not lower it (${lowered.stderr.trim()})`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a worker that cannot join its group does not start: exit 71 and the reason on stderr, the command never run', () => {
  const dir = tmpDir();
  try {
    const ran = path.join(dir, 'ran');
    const joinable = path.join(dir, 'a.procs');
    fs.writeFileSync(joinable, '');
    const [cmd, ...args] = [...joinArgs([joinable, path.join(dir, 'missing', 'cgroup.procs')]), '/bin/sh', '-c', `touch ${ran}`];
    const r = spawnSync(cmd!, args, { encoding: 'utf8' });
    assert.equal(r.status, JOIN_FAILED_EXIT);
    assert.match(r.stderr, /could not join cgroup .*missing\/cgroup\.procs: the worker does not start outside its caps/);
    assert.equal(fs.existsSync(ran), false, 'nothing after the join ran');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('killMembers ends every live process a group lists (a setsid one too), never this process, and counts them', async () => {
  const plain = spawn('sleep', ['60'], { stdio: 'ignore' });
  const escaped = spawn('setsid', ['sleep', '60'], { stdio: 'ignore' }); // not a group leader: setsid(1) execs in place, one pid
  await Promise.all([plain, escaped].map((c) => new Promise((r) => c.once('spawn', r))));
  const pids = [plain.pid!, escaped.pid!];
  await waitFor(() => pids.every(alive), 2000, 'both started');
  let lists = 0;
  const members = () => {
    lists++;
    return [process.pid, ...pids.filter(alive)];
  };
  try {
    assert.equal(killMembers(members), 2, 'two signalled; this process left out');
    await waitFor(() => !pids.some(alive), 2000, 'both gone');
    assert.ok(lists >= 2, 'listed again after the kill, until nothing was left');
    assert.equal(killMembers(() => null), null, 'no group: null, for the caller to list /proc');
  } finally {
    for (const p of pids) if (alive(p)) process.kill(p, 'SIGKILL');
  }
});

test('killUids ends every process of the given uids in one listing a round, and no other', { skip: isRoot ? false : 'needs root to run a process as another uid' }, async () => {
  const theirs = spawn('setpriv', [`--reuid=${SPARE_UID}`, `--regid=${SPARE_UID}`, '--clear-groups', 'sleep', '60'], { stdio: 'ignore' });
  const ours = spawn('sleep', ['60'], { stdio: 'ignore' });
  await Promise.all([theirs, ours].map((c) => new Promise((r) => c.once('spawn', r))));
  try {
    await waitFor(() => fs.statSync(`/proc/${theirs.pid}`).uid === SPARE_UID, 2000, 'the spare uid\'s process running');
    assert.equal(killUids(new Set([SPARE_UID, 0, process.getuid!()])), 1, 'only the spare uid\'s process: uid 0 and our own are never touched');
    await waitFor(() => !alive(theirs.pid!), 2000, 'the spare uid\'s process gone');
    assert.ok(alive(ours.pid!), 'ours still running');
  } finally {
    for (const c of [theirs, ours]) c.kill('SIGKILL');
  }
});

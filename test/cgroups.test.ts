/**
 * The per-bot cgroup layouts (master/host/cgroups.ts) on a directory that stands in for
 * the cgroup filesystem (the real v1 hierarchy is exercised by test/limits.test.ts as
 * root; cgroup v2 with delegation, systemd's layout, only here): which files are written,
 * where the master moves itself, and what is read back.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { openCgroups, ownPath } from '../master/host/cgroups.js';

const made: string[] = [];
const tmp = () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'botfleet-cg-'));
  made.push(dir);
  return dir;
};
after(() => {
  for (const dir of made) fs.rmSync(dir, { recursive: true, force: true });
});
const put = (f: string, v = '') => {
  fs.mkdirSync(path.dirname(f), { recursive: true });
  fs.writeFileSync(f, v);
};

test('ownPath reads /proc/self/cgroup for a v1 controller and for the unified hierarchy', () => {
  const text = '12:pids:/a\n4:memory,foo:/b/c\n0::/system.slice/botfleet.service\n';
  assert.equal(ownPath(text, 'pids'), '/a');
  assert.equal(ownPath(text, 'memory'), '/b/c');
  assert.equal(ownPath(text, ''), '/system.slice/botfleet.service');
  assert.equal(ownPath(text, 'cpu'), null);
});

test('v2 with delegation: the master moves to a leaf, enables memory and pids, each bot gets memory.max, swap 0, pids.max', () => {
  const root = tmp();
  const own = path.join(root, 'system.slice', 'botfleet.service');
  put(path.join(root, 'cgroup.controllers'), 'cpu memory pids');
  put(path.join(own, 'cgroup.controllers'), 'memory pids');
  put(path.join(own, 'cgroup.subtree_control'));
  const cg = openCgroups('botfleet-x', { root, selfCgroup: '0::/system.slice/botfleet.service\n', pid: 4242 });
  assert.equal(cg.kind, 'v2');
  assert.equal(fs.readFileSync(path.join(own, 'botfleet-x-master', 'cgroup.procs'), 'utf8'), '4242', 'no internal processes: the master left its group');
  assert.equal(fs.readFileSync(path.join(own, 'cgroup.subtree_control'), 'utf8'), '+memory +pids');
  const g = cg.forBot('b1', { memoryBytes: 150 * 1048576, pids: 256 })!;
  const dir = path.join(own, 'botfleet-x', 'b1');
  assert.equal(fs.readFileSync(path.join(dir, 'memory.max'), 'utf8'), String(150 * 1048576));
  assert.equal(fs.readFileSync(path.join(dir, 'memory.swap.max'), 'utf8'), '0');
  assert.equal(fs.readFileSync(path.join(dir, 'pids.max'), 'utf8'), '256');
  assert.deepEqual(g.procsFiles(), [path.join(dir, 'cgroup.procs')], 'where a worker joins');
  put(path.join(dir, 'memory.stat'), 'anon 1000\nfile 99999\nshmem 24\n');
  put(path.join(dir, 'memory.events'), 'low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n');
  assert.equal(g.memoryBytes(), 1024, 'anonymous + shared, page cache left out');
  assert.equal(g.oomKills(), 1);
  // Read every sample through a kept descriptor: a later value is seen, and the group's processes are listed.
  put(path.join(dir, 'memory.stat'), 'anon 5000\nfile 1\nshmem_thp 7\nshmem 5\n');
  assert.equal(g.memoryBytes(), 5005, 'the field named, not one it prefixes');
  put(path.join(dir, 'cgroup.procs'), '4300\n4301\n');
  assert.deepEqual(g.pids(), [4300, 4301]);
});

test('v1: memory.limit_in_bytes (and memsw) and pids.max under the master\'s own groups; total_rss + total_shmem read back', () => {
  const root = tmp();
  put(path.join(root, 'memory', 'jail', 'memory.limit_in_bytes'), '9223372036854771712');
  fs.mkdirSync(path.join(root, 'pids'), { recursive: true });
  // The stand-in directory has no kernel to create the control files: made here as the kernel would.
  put(path.join(root, 'memory', 'jail', 'botfleet-y', 'memory.limit_in_bytes'), '0');
  const cg = openCgroups('botfleet-y', { root, selfCgroup: '4:memory:/jail\n8:pids:/\n', pid: 1 });
  assert.equal(cg.kind, 'v1');
  const mem = path.join(root, 'memory', 'jail', 'botfleet-y', 'b2');
  put(path.join(mem, 'memory.limit_in_bytes'), '9223372036854771712');
  put(path.join(mem, 'memory.memsw.limit_in_bytes'), '9223372036854771712');
  const g = cg.forBot('b2', { memoryBytes: 100, pids: 64 })!;
  assert.equal(fs.readFileSync(path.join(mem, 'memory.limit_in_bytes'), 'utf8'), '100');
  assert.equal(fs.readFileSync(path.join(mem, 'memory.memsw.limit_in_bytes'), 'utf8'), '100', 'swap cannot extend the cap');
  assert.equal(fs.readFileSync(path.join(root, 'pids', 'botfleet-y', 'b2', 'pids.max'), 'utf8'), '64');
  assert.deepEqual(g.procsFiles(), [path.join(mem, 'cgroup.procs'), path.join(root, 'pids', 'botfleet-y', 'b2', 'cgroup.procs')], 'both hierarchies joined');
  put(path.join(mem, 'memory.stat'), 'cache 5000\nrss 1\ntotal_rss 300\ntotal_shmem 12\n');
  put(path.join(mem, 'memory.oom_control'), 'oom_kill_disable 0\nunder_oom 0\noom_kill 2\n');
  assert.equal(g.memoryBytes(), 312);
  assert.equal(g.oomKills(), 2);
});

test('neither: no groups, and the reason', () => {
  const root = tmp();
  const cg = openCgroups('botfleet-z', { root, selfCgroup: '0::/\n', pid: 1 });
  assert.equal(cg.kind, null);
  assert.match(cg.note ?? '', /no cgroup v1 memory and pids/);
  assert.equal(cg.forBot('b', { memoryBytes: 1, pids: 1 }), null);
});

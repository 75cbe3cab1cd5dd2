/**
 * host/spawner.ts with real processes: a child spawned off the master's loop gets our
 * socket pairs as its fds 1-4, leads its own process group, reports its exit, and leaves
 * no descriptor behind; the kernel's refusal comes back as BF_ERR_FORK with its code; a
 * stranger connecting to the pair socket is dropped without harm.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import type { Socket } from 'node:net';
import { SPARE_PAIRS, sparePairs, spawnOffLoop, type SpawnedProcess } from '../master/host/spawner.js';
import { BotfleetError } from '../common/errors.js';
import { waitFor } from './helpers/wait.js';

const linux = process.platform === 'linux' ? false : 'abstract unix sockets are Linux';

/** Everything a socket yields until its end. */
function readAll(s: Socket): Promise<string> {
  const parts: Buffer[] = [];
  return new Promise((resolve) => {
    s.on('data', (b: Buffer) => parts.push(b));
    s.once('close', () => resolve(Buffer.concat(parts).toString()));
    s.resume();
  });
}

const sh = (script: string): Promise<SpawnedProcess> => spawnOffLoop('/bin/sh', ['-c', script], { env: { PATH: process.env.PATH }, stdio: 4 });

test('a child gets fds 1-4 as sockets of ours, leads its own group, and its exit comes back', { skip: linux }, async () => {
  const p = await sh('echo out; echo err >&2; grep flags /proc/$$/fdinfo/3 >&4; read line <&3; echo "got $line pgid $(ps -o pgid= -p $$)" >&4; exit 7');
  const [out, err, toChild, fromChild] = p.stdio as [Socket, Socket, Socket, Socket];
  const texts = Promise.all([readAll(out), readAll(err), readAll(fromChild)]);
  toChild.write('hello\n');
  const exit = await p.exited;
  assert.deepEqual(exit, { code: 7, signal: null });
  assert.deepEqual(p.exit(), exit);
  const [o, e, channel] = await texts;
  assert.equal(o, 'out\n');
  assert.equal(e, 'err\n');
  const [flags, got] = channel.trim().split('\n');
  // The child's ends block, as libuv's own stdio pairs do (O_NONBLOCK is 04000): a shell's `read` waits.
  assert.equal(parseInt(flags!.split(/\s+/)[1]!, 8) & 0o4000, 0, flags);
  assert.equal(got!.replace(/\s+/g, ' '), `got hello pgid ${p.pid}`);
  toChild.destroy();
});

test('a kill of the group is reported as the signal', { skip: linux }, async () => {
  const p = await sh('sleep 30');
  process.kill(-p.pid, 'SIGKILL');
  assert.deepEqual(await p.exited, { code: null, signal: 'SIGKILL' });
  for (const s of p.stdio) s.destroy();
});

test('a program that does not exist is BF_ERR_FORK with the kernel\'s code and the path', { skip: linux }, async () => {
  const err = await spawnOffLoop('/nonexistent/botfleet-no-such-tool', [], { env: {}, stdio: 4 }).then(() => null, (e: unknown) => e);
  assert.ok(err instanceof BotfleetError, `a BotfleetError, got ${String(err)}`);
  assert.equal(err.code, 'BF_ERR_FORK');
  const real = await (err as unknown as { spawnError: Promise<NodeJS.ErrnoException> }).spawnError;
  assert.equal(real.code, 'ENOENT');
  assert.equal(real.path, '/nonexistent/botfleet-no-such-tool');
});

test('spawns leave no descriptor open in the master once their children ended', { skip: linux }, async () => {
  const open = () => fs.readdirSync('/proc/self/fd').length;
  await sh('true').then(async (p) => (await p.exited, p.stdio.forEach((s) => s.destroy()))); // the server and the thread exist
  await waitFor(() => sparePairs() === SPARE_PAIRS || null, 5000, 'the spare pairs made');
  const before = open();
  for (let i = 0; i < 5; i++) {
    const p = await sh('echo x >&4');
    const got = readAll(p.stdio[3]!);
    await p.exited;
    assert.equal(await got, 'x\n');
    for (const s of p.stdio) s.destroy();
  }
  await waitFor(() => (sparePairs() === SPARE_PAIRS && open() === before) || null, 5000, `the fd count back at ${before} (now ${open()})`);
});

test('a stranger connecting to the pair socket with a wrong nonce is dropped; spawns go on', { skip: linux }, async () => {
  await sh('true').then(async (p) => (await p.exited, p.stdio.forEach((s) => s.destroy())));
  const line = fs.readFileSync('/proc/net/unix', 'utf8').split('\n').find((l) => l.includes(`@botfleet-spawner-${process.pid}-`));
  assert.ok(line, 'the pair socket is listed in /proc/net/unix');
  const address = '\0' + line.slice(line.indexOf('@') + 1).trim();
  const stranger = net.connect({ path: address });
  stranger.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => stranger.once('close', () => resolve()));
  stranger.write(Buffer.alloc(16, 7));
  await closed;
  const p = await sh('echo fine >&4');
  const got = readAll(p.stdio[3]!);
  await p.exited;
  assert.equal(await got, 'fine\n');
  for (const s of p.stdio) s.destroy();
});

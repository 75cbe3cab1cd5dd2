/**
 * The spawner thread (host/spawner.ts): runs libuv's `spawn()` for the master so that the
 * master's loop does not wait while a new worker is forked. libuv's spawn returns only once
 * the child has exec'd its first program (it reads the exec error pipe), and on a busy
 * 2-core machine the new child waits for a CPU: measured 4-7 ms a spawn on an idle box,
 * 22-30 ms with two workers booting, 37-100 ms (p90 ~200 ms) during a 1000-bot start, all
 * of it a stall of the master's loop (DESIGN.md, "Performance rules": < 50 ms).
 *
 * Input is ours only (the master posts {@link SpawnRequest}s); the child's stdio are fds
 * the master made (integers, dup2'd into the child), so this thread holds no stream of the
 * child: it answers `spawned`/`failed`, then reports the `exit`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { parentPort } from 'node:worker_threads';
import type { SpawnReply, SpawnRequest } from './spawner.js';

const port = parentPort!;
const post = (m: SpawnReply) => port.postMessage(m);

port.on('message', (r: SpawnRequest) => {
  let child: ChildProcess;
  try {
    child = spawn(r.file, r.args, { detached: true, env: r.env, stdio: ['ignore', ...r.fds], ...(r.uid !== undefined ? { uid: r.uid, gid: r.gid ?? r.uid } : {}) });
  } catch (err) {
    return post({ type: 'failed', id: r.id, message: (err as Error).message });
  }
  child.on('error', (e: NodeJS.ErrnoException) => {
    // A failed spawn (ENOENT, EACCES, EAGAIN, EMFILE) comes here on the next tick; kill errors are the master's.
    if (child.pid === undefined) post({ type: 'failed', id: r.id, message: e.message, code: e.code, path: e.path });
  });
  if (child.pid === undefined) return;
  post({ type: 'spawned', id: r.id, pid: child.pid });
  child.once('exit', (code, signal) => post({ type: 'exit', id: r.id, code, signal }));
});

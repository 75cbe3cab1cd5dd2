/**
 * The master survives its host and its input: a pause longer than the heartbeat
 * timeout, a second master on the same home, a lost key, malformed updates at
 * both edges, EMFILE at fork time, a full disk, and a closed stdout. Real
 * processes, the emulator on loopback, every wait with a deadline.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import Database from 'better-sqlite3';
import type { Update } from 'node-telegram-bot-api';
import type { DeadLetter } from '../master/store/dead-letters.js';
import { CLI, FIXTURES, withFleet, type Fleet } from './helpers/fleet.js';
import { alive, waitFor } from './helpers/wait.js';

const isRoot = process.getuid?.() === 0;

/** Whether this machine lets us mount a tmpfs (root in a container may lack CAP_SYS_ADMIN): probed once. */
function canMountTmpfs(): boolean {
  if (!isRoot || process.platform !== 'linux') return false;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'botfleet-probe-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir], { stdio: 'ignore' });
    execFileSync('umount', [dir], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Map bot id -> worker pid of a status. */
async function pids(fleet: Fleet): Promise<Record<string, number | null>> {
  return Object.fromEntries((await fleet.status()).workers.map((w) => [w.botId, w.pid]));
}

describe('time and identity', () => {
  test('the master SIGSTOPped for twice the heartbeat timeout kills no healthy worker', async () => {
    await withFleet({}, {}, async (fleet) => {
      await fleet.addBot('a');
      await fleet.addBot('b');
      await fleet.startMaster();
      await fleet.waitRunning(['a', 'b']);
      const before = await pids(fleet);
      const master = fleet.master!;
      master.kill('SIGSTOP');
      await new Promise((r) => setTimeout(r, 2 * Number(fleet.env.HEARTBEAT_TIMEOUT_MS)));
      master.kill('SIGCONT');
      // Two heartbeat checks after the resume (one a quarter of the timeout apart) and a round trip each.
      assert.equal(await fleet.chat('a', 1, 'after pause'), 'after pause');
      await new Promise((r) => setTimeout(r, Number(fleet.env.HEARTBEAT_TIMEOUT_MS) / 2));
      assert.equal(await fleet.chat('b', 2, 'after pause'), 'after pause');
      const s = await fleet.status();
      assert.deepEqual(await pids(fleet), before, 'every worker kept its pid');
      for (const w of s.workers) assert.equal(w.restarts, 0, `${w.botId} was not restarted`);
      assert.match(fs.readFileSync(path.join(fleet.home, 'logs', 'master.log'), 'utf8'), /heartbeat deadlines renewed/);
    });
  });

  test('with the pid file deleted a second master refuses; stop signals only the lock holder', async () => {
    await withFleet({}, {}, async (fleet) => {
      await fleet.addBot('a');
      await fleet.startMaster();
      await fleet.waitRunning(['a']);
      const before = await pids(fleet);
      fs.rmSync(path.join(fleet.home, 'run', 'botfleet.pid'));
      const second = await fleet.cli(['start']);
      assert.equal(second.code, 1);
      assert.match(second.stderr, /already running in this home \(pid \d+\)/);
      assert.deepEqual(await pids(fleet), before, 'the first master kept its workers');
      // A pid file naming an unrelated live process: stop must not signal it.
      const stranger = spawn('sleep', ['60'], { stdio: 'ignore' });
      try {
        fs.writeFileSync(path.join(fleet.home, 'run', 'botfleet.pid'), `${stranger.pid}\n`);
        const r = await fleet.cli(['stop']);
        assert.equal(r.code, 0, r.stderr);
        await waitFor(() => fleet.master!.exitCode !== null, 10_000, 'the real master exiting');
        assert.ok(alive(stranger.pid!), 'the process named by the pid file was left alone');
      } finally {
        stranger.kill('SIGKILL');
      }
    });
  });

  test('restart history survives the master: a quarantined crash loop stays quarantined after a master restart', async () => {
    await withFleet({ MAX_RESTARTS_PER_HOUR: '2', RESTART_BACKOFF_MS: '50' }, {}, async (fleet) => {
      const marker = path.join(fleet.home, 'bots', 'looper', 'crash-on-boot');
      fs.mkdirSync(path.dirname(marker), { recursive: true });
      fs.writeFileSync(marker, '');
      await fleet.addBot('looper', { handler: path.join(FIXTURES, 'misbehave.js'), settings: { crashOnBootIfExists: marker } });
      await fleet.addBot('steady');
      await fleet.startMaster();
      const q = await fleet.waitWorker('looper', (w) => w.state === 'quarantined', 20_000, 'the crash loop quarantined');
      const stop = await fleet.cli(['stop']);
      assert.equal(stop.code, 0, stop.stderr);
      await waitFor(() => fleet.master!.exitCode !== null, 10_000, 'the master exiting');
      await fleet.startMaster();
      await fleet.waitRunning(['steady']);
      const again = (await fleet.worker('looper'))!;
      assert.equal(again.state, 'quarantined', 'still quarantined: the window was kept in the registry');
      assert.equal(again.restartsLastHour, q.restartsLastHour);
      assert.equal(again.pid, null, 'no worker was started for it');
      assert.match(again.stateReason ?? '', /before the master restarted/);
    });
  });

  test('a token the key cannot decrypt: that bot is stopped with the reason, the others run, /health answers 503', async () => {
    await withFleet({}, {}, async (fleet) => {
      await fleet.addBot('good');
      await fleet.addBot('sealed');
      const db = new Database(path.join(fleet.home, 'data', 'botfleet.db'));
      db.prepare("UPDATE bots SET token_enc = 'v1:AAAAAAAAAAAAAAAA:AAAAAAAAAAAAAAAAAAAAAA:AAAA' WHERE id = 'sealed'").run();
      db.close();
      await fleet.startMaster();
      await fleet.waitRunning(['good']);
      const sealed = await fleet.waitWorker('sealed', (w) => w.state === 'stopped' && w.stateReason !== null, 5000, 'the undecryptable bot stopped with its reason');
      assert.match(sealed.stateReason!, /cannot be decrypted/);
      const health = await fleet.statusHttp('/health');
      assert.equal(health.status, 503);
      assert.match(health.body, /cannot decrypt the token of 1 enabled bot\(s\): sealed/);
    });
  });

  test('a lost key: start refuses with one line and writes no new key', async () => {
    await withFleet({}, {}, async (fleet) => {
      await fleet.addBot('a');
      const keyFile = path.join(fleet.home, 'data', 'encryption.key');
      assert.ok(fs.existsSync(keyFile));
      // A wrong key (by env) decrypts no stored token: refused too.
      const wrongEnv = { ...fleet.env, BOTFLEET_ENCRYPTION_KEY: 'ab'.repeat(32) };
      const wrong = spawnSync(process.execPath, [CLI, 'start'], { env: wrongEnv, encoding: 'utf8', timeout: 30_000 });
      assert.equal(wrong.status, 78, 'a configuration error (EX_CONFIG): systemd and PM2 do not restart it');
      assert.match(wrong.stderr, /decrypts none of the stored tokens: wrong BOTFLEET_ENCRYPTION_KEY/);
      fs.rmSync(keyFile);
      const r = await fleet.cli(['start']);
      assert.equal(r.code, 78);
      assert.match(r.stderr, /key file .* is missing.*no new key was written/);
      assert.equal(r.stderr.trim().split('\n').length, 1, 'one line');
      assert.equal(fs.existsSync(keyFile), false, 'no key was generated over the encrypted tokens');
      const list = await fleet.cli(['bots', 'list']);
      assert.equal(list.code, 78, 'the CLI refuses too');
      assert.equal(fs.existsSync(keyFile), false);
    });
  });
});

describe('malformed input at both edges', () => {
  test('webhook: message null, a 5,000-deep body, wrong types: 400, the worker untouched, other updates fine', async () => {
    await withFleet({}, { webhook: true }, async (fleet) => {
      await fleet.addBot('hooked', { mode: 'webhook' });
      await fleet.startMaster();
      await fleet.waitRunning(['hooked']);
      const before = (await fleet.worker('hooked'))!;
      const deep = '{"update_id":7,"message":' + '{"a":'.repeat(5000) + '1' + '}'.repeat(5000) + '}';
      const bad = ['{"update_id":1,"message":null}', '{"update_id":2,"callback_query":null}', '{"update_id":3,"message":"text"}', '{"update_id":"4"}', '[1,2]', deep];
      const codes = await Promise.all([...bad.map((b) => fleet.postWebhook('hooked', b)), fleet.postWebhook('hooked', JSON.stringify({ update_id: 9, message: { message_id: 1, date: 0, chat: { id: 5, type: 'private' }, from: { id: 5, is_bot: false, first_name: 'u' }, text: 'fine' } }))]);
      assert.deepEqual(codes, [400, 400, 400, 400, 400, 400, 200]);
      assert.equal(await fleet.chat('hooked', 6, 'still fine'), 'still fine');
      const w = (await fleet.worker('hooked'))!;
      assert.equal(w.pid, before.pid);
      assert.equal(w.restarts, 0);
    });
  });

  test('polling: an update with a null kind is dead-lettered by the worker, which keeps serving', async () => {
    await withFleet({}, {}, async (fleet) => {
      await fleet.addBot('poller');
      await fleet.startMaster();
      await fleet.waitRunning(['poller']);
      const before = (await fleet.worker('poller'))!;
      const tg = fleet.tg('poller');
      // The emulator's queue takes any body: a hostile or broken Bot API server.
      const bad = (fleet.emulator as unknown as { push(b: unknown, body: object): Update }).push(tg, { message: null });
      assert.equal(await fleet.chat('poller', 7, 'next one'), 'next one');
      const w = await fleet.waitWorker('poller', (x) => x.errors >= 1, 5000, 'the malformed update counted as an error');
      assert.equal(w.pid, before.pid, 'no worker crash');
      const list = await waitFor(async () => {
        const l = JSON.parse((await fleet.cli(['dlq', 'list', '--json'])).stdout) as DeadLetter[];
        return l.length > 0 ? l : null;
      }, 5000, 'the malformed update in the dead-letter queue');
      assert.equal(list[0]!.updateId, bad.update_id);
      assert.match(list[0]!.reason, /malformed/);
    });
  });
});

describe('duplicates', () => {
  test('the same update posted twice while its handler runs, and again after: every post 200 once journaled, handled once', async () => {
    await withFleet({}, { webhook: true }, async (fleet) => {
      await fleet.addBot('slowpoke', { mode: 'webhook', handler: path.join(FIXTURES, 'misbehave.js') });
      await fleet.startMaster();
      await fleet.waitRunning(['slowpoke']);
      const body = JSON.stringify({ update_id: 4242, message: { message_id: 1, date: 0, chat: { id: 77, type: 'private' }, from: { id: 77, is_bot: false, first_name: 'u' }, text: 'slow' } });
      // The handler takes 1 s; the journal answers once the update is committed, not handled.
      const first = await fleet.postWebhook('slowpoke', body);
      const second = await fleet.postWebhook('slowpoke', body);
      assert.deepEqual([first, second], [200, 200]);
      await fleet.emulator.waitForSent(fleet.tg('slowpoke'), (m) => m.text === 'slow done', 5000, 'the reply');
      assert.equal(await fleet.postWebhook('slowpoke', body), 200, 'a redelivery after the ack');
      // A later update of the same chat is handled after the duplicate would have been: the order proves it was not.
      const later = JSON.stringify({ update_id: 4243, message: { message_id: 2, date: 0, chat: { id: 77, type: 'private' }, from: { id: 77, is_bot: false, first_name: 'u' }, text: 'after' } });
      assert.equal(await fleet.postWebhook('slowpoke', later), 200);
      await fleet.emulator.waitForSent(fleet.tg('slowpoke'), (m) => m.text === 'ok: after', 5000, 'the later reply');
      assert.equal(fleet.tg('slowpoke').sent.filter((m) => m.text === 'slow done').length, 1, 'handled once');
      type Stats = { journal: Record<string, { duplicates: number; delivered: number; pending: number }> };
      // The reply reaches the emulator before the ack reaches the master.
      const stats = await waitFor(async () => {
        const st = JSON.parse((await fleet.statusHttp('/webhook/stats')).body) as Stats;
        return st.journal.slowpoke!.delivered === 2 ? st : null;
      }, 5000, 'both updates acked');
      assert.equal(stats.journal.slowpoke!.duplicates, 2);
      assert.equal(stats.journal.slowpoke!.pending, 0);
    });
  });
});

describe('host faults', () => {
  test('EMFILE at fork: that bot backs off, the master and the others live, and it starts once descriptors free up', { skip: process.platform === 'linux' ? false : 'prlimit is Linux' }, async () => {
    await withFleet({ MAX_RESTARTS_PER_HOUR: '50' }, {}, async (fleet) => {
      await fleet.addBot('a');
      await fleet.addBot('b');
      await fleet.startMaster();
      const s = await fleet.waitRunning(['a', 'b']);
      const before = await pids(fleet);
      const masterPid = s.master.pid;
      const open = fs.readdirSync(`/proc/${masterPid}/fd`).length;
      const limits = fs.readFileSync(`/proc/${masterPid}/limits`, 'utf8').split('\n').find((l) => l.startsWith('Max open files'))!.split(/\s+/);
      const hard = limits[4]!;
      // Room for the registry poll and a control request, not for a worker's five pipes.
      execFileSync('prlimit', [`--pid=${masterPid}`, `--nofile=${open + 3}:${hard}`]);
      try {
        await fleet.addBot('c');
        await waitFor(() => fs.readFileSync(path.join(fleet.home, 'logs', 'master.log'), 'utf8').includes('fork failed'), 15_000, 'a fork failing with EMFILE');
        assert.equal(fleet.master!.exitCode, null, 'the master lives');
      } finally {
        execFileSync('prlimit', [`--pid=${masterPid}`, `--nofile=${hard}:${hard}`]);
      }
      assert.equal(await fleet.chat('a', 8, 'still here'), 'still here');
      await fleet.waitRunning(['a', 'b', 'c'], 30_000);
      const after = await pids(fleet);
      assert.equal(after.a, before.a);
      assert.equal(after.b, before.b);
      assert.equal(await fleet.chat('c', 9, 'late but fine'), 'late but fine');
    });
  });

  test('a full disk: log lines are dropped and counted, the bots keep answering, /health says the journal cannot write, all resumes', { skip: canMountTmpfs() ? false : 'mounting a tmpfs needs root with CAP_SYS_ADMIN' }, async () => {
    const mnt = fs.mkdtempSync(path.join(os.tmpdir(), 'botfleet-tmpfs-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=24m,mode=0711', 'tmpfs', mnt]);
    try {
      const home = path.join(mnt, 'home');
      fs.mkdirSync(home, { mode: 0o711 });
      await withFleet({}, { home, webhook: true }, async (fleet) => {
        await fleet.addBot('a', { mode: 'polling' });
        await fleet.addBot('b', { mode: 'polling' });
        await fleet.addBot('h', { mode: 'webhook' });
        await fleet.startMaster();
        await fleet.waitRunning(['a', 'b', 'h']);
        const post = (id: number) => fleet.postWebhook('h', JSON.stringify({ update_id: id, message: { message_id: id, date: 0, chat: { id: 1, type: 'private' }, text: 'x'.repeat(2000) } }));
        const filler = path.join(mnt, 'filler');
        try {
          execFileSync('dd', ['if=/dev/zero', `of=${filler}`, 'bs=1M', 'count=64'], { stdio: 'ignore' });
        } catch {
          // dd stops at ENOSPC: the disk is full, as wanted
        }
        // A restart writes several master log lines, and the worker's: none fits on the disk.
        for (let i = 0; i < 4; i++) {
          const r1 = await fleet.cli(['restart', 'b']);
          assert.equal(r1.code, 0, r1.stderr);
        }
        for (let i = 0; i < 3; i++) assert.equal(await fleet.chat('a', 10, `full ${i}`), `full ${i}`);
        assert.equal(await fleet.chat('b', 11, 'b too'), 'b too');
        assert.equal(fleet.master!.exitCode, null, 'the master lives on a full disk');
        // The journal cannot commit: Telegram is told 503 (it keeps the update), and so is /health.
        const refused = await waitFor(async () => {
          const codes = await Promise.all(Array.from({ length: 20 }, (_, i) => post(1000 + i)));
          return codes.includes(503) ? codes : null;
        }, 10_000, 'a webhook update refused for the full disk');
        assert.ok(refused.every((c) => c === 200 || c === 503));
        const sick = await fleet.statusHttp('/health');
        assert.equal(sick.status, 503);
        assert.match(sick.body, /the journal cannot write/);
        fs.rmSync(filler);
        await waitFor(async () => ((await post(5000)) === 200 ? true : null), 10_000, 'the journal writing again');
        assert.equal((await fleet.statusHttp('/health')).status, 200, 'healthy again');
        const log = path.join(home, 'logs', 'master.log');
        await waitFor(async () => {
          assert.equal((await fleet.cli(['restart', 'b'])).code, 0);
          return fs.readFileSync(log, 'utf8').includes('log lines dropped');
        }, 15_000, `logging resuming once space frees, with the count of lines lost (master.log ends: ${fs.readFileSync(log, 'utf8').slice(-300)})`);
        const note = fs.readFileSync(log, 'utf8').split('\n').find((l) => l.includes('log lines dropped'))!;
        assert.ok((JSON.parse(note) as { dropped: number }).dropped >= 1);
      });
    } finally {
      execFileSync('umount', ['-l', mnt]);
      fs.rmSync(mnt, { recursive: true, force: true });
    }
  });

  test('a closed stdout (EPIPE on the next log line): the master lives and the bots answer', async () => {
    await withFleet({}, {}, async (fleet) => {
      await fleet.addBot('a');
      // The master's stdout is a pipe this test closes at once.
      const m = spawn(process.execPath, [CLI, 'start'], { env: fleet.env, stdio: ['ignore', 'pipe', 'ignore'] });
      fleet.master = m;
      await fleet.waitRunning(['a']);
      m.stdout!.destroy();
      // Lines the master logs now meet a closed pipe: a restart logs several.
      const r = await fleet.cli(['restart', 'a']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(await fleet.chat('a', 13, 'no pipe, no problem'), 'no pipe, no problem');
      assert.equal(m.exitCode, null, 'the master lives');
    });
  });
});

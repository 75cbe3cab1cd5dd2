/**
 * The journal and at-least-once delivery, end to end: a real master, real
 * workers, the emulator delivering webhooks (and serving long polls), real
 * SIGKILLs, and the journal's file read back with the `sqlite3` CLI (Debian's
 * sqlite3; better-sqlite3 when the CLI is missing).
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { journalQuery } from './helpers/journal-file.js';
import { FIXTURES, withFleet } from './helpers/fleet.js';
import { waitFor } from './helpers/wait.js';
import { streamThroughKills } from './helpers/streams.js';

const MISBEHAVE = path.join(FIXTURES, 'misbehave.js');

describe('journal', () => {
  test('1000 updates over 20 chats, the worker SIGKILLed twice mid-stream: every POST 200, each handled, in order per chat', async (t) => {
    await withFleet({ RESTART_BACKOFF_MS: '50' }, { webhook: true }, async (fleet) => {
      await fleet.addBot('hook', { mode: 'webhook', handler: MISBEHAVE, settings: { delayMs: 5 } });
      await fleet.startMaster();
      await fleet.waitRunning(['hook']);
      const tg = fleet.tg('hook');
      const duplicates = await streamThroughKills(fleet, 'hook', 20, 50, [300, 650]);
      await fleet.waitWorker('hook', (w) => w.state === 'running', 10_000, 'the bot running again');
      assert.deepEqual(Object.keys(tg.webhookAnswers), ['200'], `every webhook POST answered 200: ${JSON.stringify(tg.webhookAnswers)}`);
      assert.equal(tg.webhookAnswers['200'], 1000, 'no POST repeated: none was refused');
      t.diagnostic(`webhook: ${duplicates} of 1000 handled twice`);
      const w = (await fleet.worker('hook'))!;
      assert.ok(w.restarts >= 2, 'both kills restarted the worker');
      const stats = JSON.parse((await fleet.statusHttp('/webhook/stats')).body) as { journal: Record<string, { journaled: number; pending: number; deadLettered: number }> };
      assert.equal(stats.journal.hook!.journaled, 1000);
      assert.equal(stats.journal.hook!.deadLettered, 0);
      await waitFor(async () => (JSON.parse((await fleet.statusHttp('/webhook/stats')).body) as typeof stats).journal.hook!.pending === 0, 5000, 'the journal empty');
    });
  });

  test('the master SIGKILLed with updates journaled and not acked, then started: each handled once, the same update again is not, the file ends empty', async () => {
    await withFleet({ HEARTBEAT_TIMEOUT_MS: '60000', WORKER_TIMEOUT_MS: '60000' }, { webhook: true }, async (fleet) => {
      await fleet.addBot('hook', { mode: 'webhook', handler: MISBEHAVE });
      await fleet.startMaster();
      const s = await fleet.waitRunning(['hook']);
      const tg = fleet.tg('hook');
      const worker = s.workers[0]!.pid!;
      // A frozen worker: what the master sends waits in the pipe, never handled, never acked.
      process.kill(worker, 'SIGSTOP');
      type TextUpdate = { update_id: number; message: { text: string; [k: string]: unknown } };
      const updates = Array.from({ length: 20 }, (_, i) => fleet.emulator.userSends(tg, 2000 + (i % 4), `j${i}`) as unknown as TextUpdate);
      await waitFor(() => tg.webhookAnswers['200'] === 20, 10_000, 'all 20 answered 200');
      assert.equal(tg.sent.length, 0, 'nothing handled yet');
      assert.equal(journalQuery(fleet.home, "SELECT count(*) AS n FROM pending WHERE bot = 'hook'")[0]!.n, 20, 'all 20 in the file');
      fleet.master!.kill('SIGKILL');
      await waitFor(() => fleet.master!.signalCode !== null, 5000, 'the master dying');
      process.kill(worker, 'SIGKILL');

      await fleet.startMaster();
      await fleet.waitRunning(['hook']);
      await waitFor(() => tg.sent.length >= 20, 20_000, 'the 20 journaled updates handled');
      // Telegram redelivers one whose 200 it never saw: it was acked, so it is answered and not handled again.
      assert.equal(await fleet.postWebhook('hook', JSON.stringify(updates[3])), 200);
      assert.equal(await fleet.postWebhook('hook', JSON.stringify({ ...updates[3]!, update_id: updates[19]!.update_id + 1, message: { ...updates[3]!.message, text: 'last' } })), 200);
      await fleet.emulator.waitForSent(tg, (m) => m.text === 'ok: last', 5000, 'the reply to a later update of that chat');
      const texts = tg.sent.map((m) => m.text).filter((t) => t !== 'ok: last').sort();
      assert.deepEqual(texts, updates.map((u) => `ok: ${u.message.text}`).sort(), 'each once');
      await waitFor(() => journalQuery(fleet.home, 'SELECT count(*) AS n FROM pending')[0]!.n === 0, 5000, 'no leftover in the file');
      const acked = journalQuery(fleet.home, "SELECT count(*) AS n FROM acked WHERE bot = 'hook'")[0]!.n as number;
      assert.equal(acked, 21, 'acked ids kept for dedup');
    });
  });

  test('a polling bot with a 40 ms handler, 300 updates over 10 chats, the worker SIGKILLed twice: none lost, order per chat, repeats only of what was in flight', async (t) => {
    await withFleet({ RESTART_BACKOFF_MS: '50' }, {}, async (fleet) => {
      await fleet.addBot('poller', { handler: MISBEHAVE, settings: { delayMs: 40 } });
      await fleet.startMaster();
      await fleet.waitRunning(['poller']);
      const tg = fleet.tg('poller');
      const duplicates = await streamThroughKills(fleet, 'poller', 10, 30, [100, 200]);
      t.diagnostic(`polling: ${duplicates} of 300 handled twice`);
      await waitFor(() => tg.pending.length === 0, 10_000, 'every update confirmed to Telegram');
    });
  });

  test('429 with retry_after on sendMessage for 3 s: every reply arrives after the wait, no handler error', async () => {
    await withFleet({}, {}, async (fleet) => {
      await fleet.addBot('flood');
      await fleet.startMaster();
      await fleet.waitRunning(['flood']);
      const tg = fleet.tg('flood');
      const t0 = Date.now();
      fleet.emulator.floodWait(tg, 3000);
      for (let i = 0; i < 5; i++) fleet.emulator.userSends(tg, 4000 + i, `f${i}`);
      await waitFor(() => tg.sent.length >= 5, 20_000, 'all 5 replies');
      assert.ok(Date.now() - t0 >= 2900, 'not before the flood wait ended');
      assert.ok(tg.floodRefused >= 5, 'each was refused first');
      assert.deepEqual(tg.sent.map((m) => m.text).sort(), ['f0', 'f1', 'f2', 'f3', 'f4']);
      const w = await fleet.waitWorker('flood', (x) => x.messages >= 5, 5000, 'the counters');
      assert.equal(w.errors, 0, 'no handler error counted');
    });
  });

  test('another tool overwrites the webhook: the periodic check finds the drift, sets it again, counts it, and updates flow', async () => {
    await withFleet({ WEBHOOK_CHECK_MS: '300' }, { webhook: true }, async (fleet) => {
      await fleet.addBot('hook', { mode: 'webhook' });
      await fleet.startMaster();
      await fleet.waitRunning(['hook']);
      const tg = fleet.tg('hook');
      const ours = tg.webhook!.url;
      assert.equal(tg.webhook!.maxConnections, 40);
      const res = await fetch(`${fleet.emulator.apiRoot}/bot${tg.token}/setWebhook`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ url: 'https://elsewhere.invalid/hook' }) });
      assert.equal(res.status, 200);
      const w = await fleet.waitWorker('hook', (x) => x.webhookDrifts >= 1, 10_000, 'the drift counted');
      assert.equal(tg.webhook?.url, ours, 'set again');
      assert.equal(w.state, 'running');
      assert.equal(await fleet.chat('hook', 5000, 'back'), 'back');
      // The reply reaches the emulator before the ack reaches the master.
      const metrics = await waitFor(async () => {
        const m = (await fleet.statusHttp('/metrics')).body;
        return /botfleet_journal_pending\{bot="hook"\} 0/.test(m) ? m : null;
      }, 5000, 'the journal empty in /metrics');
      assert.match(metrics, /botfleet_webhook_drifts_total\{bot="hook"\} [1-9]/);
      assert.match(metrics, /botfleet_journal_journaled_total\{bot="hook"\} [1-9]/);
    });
  });

  test('a disabled bot keeps its journaled updates; `dlq take` moves them to the dead-letter queue, refused while it runs', async () => {
    await withFleet({ WORKER_TIMEOUT_MS: '1500', HEARTBEAT_TIMEOUT_MS: '60000' }, { webhook: true }, async (fleet) => {
      await fleet.addBot('hook', { mode: 'webhook' });
      await fleet.startMaster();
      const s = await fleet.waitRunning(['hook']);
      const refused = await fleet.cli(['dlq', 'take', '--bot', 'hook']);
      assert.notEqual(refused.code, 0);
      assert.match(refused.stderr, /is running/);
      const tg = fleet.tg('hook');
      process.kill(s.workers[0]!.pid!, 'SIGSTOP'); // nothing it is sent gets handled
      for (let i = 0; i < 3; i++) fleet.emulator.userSends(tg, 6000, `d${i}`);
      await waitFor(() => tg.webhookAnswers['200'] === 3, 10_000, 'the 3 updates journaled');
      assert.equal((await fleet.cli(['bots', 'disable', 'hook'])).code, 0);
      await fleet.waitWorker('hook', (w) => w.state === 'stopped', 15_000, 'the frozen worker killed at the drain deadline');
      assert.equal(journalQuery(fleet.home, "SELECT count(*) AS n FROM pending WHERE bot = 'hook'")[0]!.n, 3, 'kept while disabled');
      const took = await fleet.cli(['dlq', 'take', '--bot', 'hook']);
      assert.equal(took.code, 0, took.stderr);
      assert.match(took.stdout, /moved 3/);
      const list = JSON.parse((await fleet.cli(['dlq', 'list', '--json'])).stdout) as Array<{ botId: string; reason: string }>;
      assert.equal(list.filter((d) => d.botId === 'hook' && /dlq take/.test(d.reason)).length, 3);
      await waitFor(() => journalQuery(fleet.home, "SELECT count(*) AS n FROM pending WHERE bot = 'hook'")[0]!.n === 0, 5000, 'the journal file empty for that bot');
      assert.equal(tg.sent.length, 0, 'none was handled');
    });
  });
});

/**
 * Delivery without collateral (master/delivery/poison.ts): after a worker death the
 * updates in flight are suspects, taken one at a time; only an update alone in flight at
 * two deaths is dead-lettered. Real fleets, the emulator on loopback, Telegram's default
 * limits (30 calls/s a bot, no per-chat limit): two SIGKILLs in a 300-update stream lose
 * nothing; one poison among 40 in flight is dead-lettered alone, webhook and polling; a
 * memory kill and a rolling restart with a full window dead-letter nothing; a burst into one
 * chat is answered at once, and a 429 is waited out.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';
import { FIXTURES, withFleet, type Fleet } from './helpers/fleet.js';
import { waitFor } from './helpers/wait.js';

const INFLIGHT = path.join(FIXTURES, 'inflight.js');
/** Telegram's defaults as botfleet ships them (FAST_ENV turns the limiter off for other suites). */
const DEFAULT_LIMITS = { RATE_LIMIT_GLOBAL: '30', RATE_LIMIT_PER_CHAT: '0' };

const message = (id: number, chat: number, text: string) => JSON.stringify({ update_id: id, message: { message_id: id, date: 0, chat: { id: chat, type: 'private' }, from: { id: chat, is_bot: false, first_name: 'u' }, text } });
const deadLetters = async (fleet: Fleet) => JSON.parse((await fleet.cli(['dlq', 'list', '--json'])).stdout) as Array<{ updateId: number }>;
const replied = (fleet: Fleet, bot: string) => new Set(fleet.tg(bot).sent.map((m) => m.text));

describe('delivery without collateral', () => {
  test('300 webhook updates, two worker SIGKILLs, the default limits: every update answered, none dead-lettered', { timeout: 120_000 }, async (t) => {
    await withFleet(DEFAULT_LIMITS, { webhook: true }, async (fleet) => {
      await fleet.addBot('echoer', { mode: 'webhook', settings: {} });
      await fleet.startMaster();
      await fleet.waitRunning(['echoer']);
      const codes = await Promise.all(Array.from({ length: 300 }, (_, i) => fleet.postWebhook('echoer', message(i + 1, 1000 + (i % 30), `m${i + 1}`))));
      assert.deepEqual(codes.filter((c) => c !== 200), [], 'every POST journaled');
      for (const after of [60, 150]) {
        await waitFor(() => (fleet.tg('echoer').sent.length >= after ? true : null), 30_000, `${after} replies`);
        const w = (await fleet.worker('echoer'))!;
        process.kill(w.pid!, 'SIGKILL');
        await fleet.waitWorker('echoer', (x) => x.state === 'running' && x.pid !== w.pid, 15_000, 'a new worker');
      }
      const started = Date.now();
      await waitFor(() => (replied(fleet, 'echoer').size >= 300 ? true : null), 60_000, 'every update answered');
      t.diagnostic(`the rest answered ${Date.now() - started} ms after the second kill; ${fleet.tg('echoer').sent.length} replies for 300 updates`);
      assert.deepEqual(await deadLetters(fleet), []);
    });
  });

  for (const mode of ['webhook', 'polling'] as const) {
    test(`${mode}: 40 updates in flight, one kills its worker every time: it alone is dead-lettered, the 39 others answered`, { timeout: 120_000 }, async (t) => {
      await withFleet({ ...DEFAULT_LIMITS, MAX_RESTARTS_PER_HOUR: '20' }, { webhook: mode === 'webhook' }, async (fleet) => {
        await fleet.addBot('mixed', { mode, handler: INFLIGHT });
        await fleet.startMaster();
        await fleet.waitRunning(['mixed']);
        const texts = Array.from({ length: 40 }, (_, i) => (i === 19 ? 'crash' : `u${i}`));
        const t0 = Date.now();
        if (mode === 'webhook') {
          const codes = await Promise.all(texts.map((text, i) => fleet.postWebhook('mixed', message(i + 1, 2000 + i, text))));
          assert.deepEqual(codes.filter((c) => c !== 200), []);
        } else {
          texts.forEach((text, i) => fleet.emulator.userSends(fleet.tg('mixed'), 2000 + i, text));
        }
        const dl = await waitFor(async () => {
          const l = await deadLetters(fleet);
          return l.length > 0 && replied(fleet, 'mixed').size >= 39 ? l : null;
        }, 90_000, 'the poison dead-lettered and the others answered');
        t.diagnostic(`probation after a death with 40 in flight (100 ms handlers): the poison dead-lettered and 39 answered in ${Date.now() - t0} ms`);
        assert.equal(dl.length, 1, 'only the poison');
        for (const text of texts.filter((x) => x !== 'crash')) assert.ok(replied(fleet, 'mixed').has(text), `${text} answered`);
        assert.equal(await fleet.chat('mixed', 3000, 'after'), 'after', 'the bot serves on');
      });
    });
  }

  test('a memory-cap kill and a rolling restart, each with a full window: nothing dead-lettered, everything answered', { timeout: 120_000 }, async () => {
    await withFleet({ ...DEFAULT_LIMITS, MAX_MEMORY_PER_WORKER_MB: '150', MEMORY_CHECK_INTERVAL_MS: '200', MAX_RESTARTS_PER_HOUR: '20' }, { webhook: true }, async (fleet) => {
      await fleet.addBot('heavy', { mode: 'webhook', handler: INFLIGHT, settings: { delayMs: 400 } });
      await fleet.startMaster();
      const s = await fleet.waitRunning(['heavy']);
      // 30 updates holding 10 MiB each at once: over the cap together, not alone.
      const codes = await Promise.all(Array.from({ length: 30 }, (_, i) => fleet.postWebhook('heavy', message(i + 1, 4000 + i, `mem 10 #${i}`))));
      assert.deepEqual(codes.filter((c) => c !== 200), []);
      const w = await fleet.waitWorker('heavy', (x) => x.pid !== s.workers[0]!.pid && x.lastExit !== null, 30_000, 'the memory kill');
      assert.equal(w.lastExit?.reason, 'memory');
      await waitFor(() => (replied(fleet, 'heavy').size >= 30 ? true : null), 60_000, 'all 30 answered after the kill');
      // A rolling restart while the window is full.
      const more = Array.from({ length: 30 }, (_, i) => fleet.postWebhook('heavy', message(100 + i, 5000 + i, `r${i}`)));
      const roll = await fleet.cli(['restart']);
      assert.equal(roll.code, 0, roll.stderr);
      await Promise.all(more);
      await waitFor(() => (replied(fleet, 'heavy').size >= 60 ? true : null), 60_000, 'all answered across the roll');
      assert.deepEqual(await deadLetters(fleet), []);
    });
  });

  test('default limits: five messages in a row into one chat are answered within 2 s; a 429 is waited out, no handler error', { timeout: 60_000 }, async (t) => {
    await withFleet(DEFAULT_LIMITS, {}, async (fleet) => {
      await fleet.addBot('chatty');
      await fleet.startMaster();
      await fleet.waitRunning(['chatty']);
      const tg = fleet.tg('chatty');
      const t0 = Date.now();
      for (let i = 0; i < 5; i++) fleet.emulator.userSends(tg, 6000, `burst ${i}`);
      await waitFor(() => (tg.sent.filter((m) => m.chat_id === 6000).length >= 5 ? true : null), 2000, 'five replies within 2 s');
      t.diagnostic(`five replies in ${Date.now() - t0} ms`);
      fleet.emulator.floodWait(tg, 3000);
      const t1 = Date.now();
      assert.equal(await fleet.chat('chatty', 6001, 'after the flood'), 'after the flood');
      const waited = Date.now() - t1;
      t.diagnostic(`a reply under a 3 s retry_after arrived after ${waited} ms`);
      assert.ok(waited >= 2500, `waited out retry_after (${waited} ms)`);
      assert.equal((await fleet.worker('chatty'))!.errors, 0, 'no handler error');
    });
  });
});

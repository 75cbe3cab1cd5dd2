/** common/bot-api-http.ts against the Bot API emulator on loopback: results, errors, deadlines, cancel, and the library over botApiFetch. */
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { Api, TelegramApiError } from 'node-telegram-bot-api';
import { BotApiError, botApiFetch, callBotApi } from '../common/bot-api-http.js';
import { freePort } from '../common/free-port.js';
import { BotApiEmulator } from '../scripts/emulator/emulator.js';
import { waitFor } from './helpers/wait.js';

describe('Bot API over node:http', () => {
  const em = new BotApiEmulator();
  let root: string;
  before(async () => (root = await em.start()));
  after(() => em.stop());

  test('a result is unwrapped; 401 and 409 are BotApiErrors with their code, not transient, and carry no token', async () => {
    const bot = em.createBot('http_bot');
    const me = await callBotApi<{ username: string }>(root, bot.token, 'getMe', {}, { timeoutMs: 2000 });
    assert.equal(me.username, 'http_bot');
    const fake = `123456:${'B'.repeat(35)}`;
    const e401 = await callBotApi(root, fake, 'getMe', {}, { timeoutMs: 2000 }).then(() => null, (e: unknown) => e);
    assert.ok(e401 instanceof BotApiError && e401.errorCode === 401 && !e401.transient, String(e401));
    assert.ok(!e401.message.includes(fake) && !e401.message.includes('B'.repeat(35)), 'no token in the message');
    await callBotApi(root, bot.token, 'setWebhook', { url: 'http://127.0.0.1:9/hook' }, { timeoutMs: 2000 });
    const e409 = await callBotApi(root, bot.token, 'getUpdates', {}, { timeoutMs: 2000 }).then(() => null, (e: unknown) => e);
    assert.ok(e409 instanceof BotApiError && e409.errorCode === 409 && !e409.transient, String(e409));
    assert.equal(await callBotApi(root, bot.token, 'deleteWebhook', { drop_pending_updates: false }, { timeoutMs: 2000 }), true);
  });

  test('getUpdates long poll: wakes on a new update, its offset confirms, a deadline is a transient error, a cancel rejects with the reason', async () => {
    const bot = em.createBot();
    const waiting = callBotApi<Array<{ update_id: number }>>(root, bot.token, 'getUpdates', { timeout: 5 }, { timeoutMs: 8000 });
    await waitFor(() => em.isLongPolling(bot), 2000, 'the poll waiting');
    const sent = em.userSends(bot, 1, 'hello');
    const got = await waiting;
    assert.deepEqual(got.map((u) => u.update_id), [sent.update_id]);
    await callBotApi(root, bot.token, 'getUpdates', { offset: sent.update_id + 1, timeout: 0 }, { timeoutMs: 2000 });
    assert.equal(bot.pending.length, 0, 'the offset confirmed it');

    const late = await callBotApi(root, bot.token, 'getUpdates', { timeout: 5 }, { timeoutMs: 150 }).then(() => null, (e: unknown) => e);
    assert.ok(late instanceof BotApiError && late.transient && late.errorCode === null && /timed out after 150 ms/.test(late.message), String(late));

    const ac = new AbortController();
    const cancelled = callBotApi(root, bot.token, 'getUpdates', { timeout: 5 }, { timeoutMs: 8000, signal: ac.signal }).then(() => null, (e: unknown) => e);
    await waitFor(() => em.isLongPolling(bot), 2000, 'the second poll waiting');
    ac.abort(new Error('stopping'));
    const err = await cancelled;
    assert.ok(err instanceof Error && !(err instanceof BotApiError) && err.message === 'stopping', String(err));
  });

  test('no server: a transient BotApiError with no code; a 5xx without an envelope is transient too', async () => {
    const port = await freePort();
    const refused = await callBotApi(`http://127.0.0.1:${port}`, 'x', 'getMe', {}, { timeoutMs: 2000 }).then(() => null, (e: unknown) => e);
    assert.ok(refused instanceof BotApiError && refused.transient && refused.errorCode === null, String(refused));
    const server = http.createServer((_req, res) => res.writeHead(502).end('<html>bad gateway</html>'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const { port: p } = server.address() as { port: number };
      const bad = await callBotApi(`http://127.0.0.1:${p}`, 'x', 'getMe', {}, { timeoutMs: 2000 }).then(() => null, (e: unknown) => e);
      assert.ok(bad instanceof BotApiError && bad.transient && /502/.test(bad.message), String(bad));
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  test('the library over botApiFetch: a reply is sent, and a Telegram error keeps its class and code', async () => {
    const bot = em.createBot();
    const api = new Api(bot.token, { apiRoot: root, fetch: botApiFetch, maxRetries: 0 });
    const msg = await api.sendMessage({ chat_id: 42, text: 'über ✓' });
    assert.equal(msg.text, 'über ✓');
    await em.waitForSent(bot, (m) => m.text === 'über ✓', 2000, 'the sent message');
    const other = new Api(`123456:${'C'.repeat(35)}`, { apiRoot: root, fetch: botApiFetch, maxRetries: 0 });
    await assert.rejects(other.getMe(), (e: unknown) => e instanceof TelegramApiError && e.errorCode === 401);
  });
});

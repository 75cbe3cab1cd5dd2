/** The webhook server through fastify's inject(), and the Bot API emulator's fidelity to the docs. */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Update } from 'node-telegram-bot-api';
import { Api, TelegramApiError } from 'node-telegram-bot-api';
import { createWebhookServer, type DeliverResult } from '../webhook-server/server.js';
import { NO_SCHEMAS } from '../common/fastify-schemas.js';
import { BotApiEmulator } from '../scripts/emulator/emulator.js';
import { waitFor } from './helpers/wait.js';

describe('webhook server', () => {
  const delivered: Array<[string, Update]> = [];
  let answer: DeliverResult = 'journaled';
  const app = createWebhookServer({
    target: { isWebhookBot: (id) => id === 'known', deliver: async (id, u) => (delivered.push([id, u]), answer) },
    secretTokenFor: (id) => `secret-${id}`,
    bodyLimit: 1024,
  });
  after(() => app.close());
  const post = (bot: string, payload: string, secret?: string, type = 'application/json') => app.inject({
    method: 'POST', url: `/webhook/${bot}`, payload,
    headers: { 'content-type': type, ...(secret !== undefined ? { 'x-telegram-bot-api-secret-token': secret } : {}) },
  });
  const update = JSON.stringify({ update_id: 7, message: { message_id: 1, date: 0, chat: { id: 1, type: 'private' }, text: 'hi' } });

  test('status codes per DESIGN.md, and only a valid update reaches the target', async () => {
    assert.equal((await post('known', update, 'wrong')).statusCode, 401);
    assert.equal((await post('known', update)).statusCode, 401);
    assert.equal((await post('stranger', update, 'secret-stranger')).statusCode, 404);
    assert.equal((await post('known', 'not json', 'secret-known', 'text/plain')).statusCode, 400);
    assert.equal((await post('known', '[1,2]', 'secret-known')).statusCode, 400);
    assert.equal((await post('known', JSON.stringify({ update_id: 1, pad: 'x'.repeat(2000) }), 'secret-known')).statusCode, 413);
    assert.equal(delivered.length, 0);
    assert.equal((await post('known', update, 'secret-known')).statusCode, 200);
    assert.deepEqual(delivered.map(([id, u]) => [id, u.update_id]), [['known', 7]]);
  });

  test('a full journal or a failed write gets 503 with Retry-After so Telegram keeps the update; a duplicate 200', async () => {
    answer = 'full';
    const full = await post('known', update, 'secret-known');
    assert.equal(full.statusCode, 503);
    assert.equal(full.headers['retry-after'], '5');
    answer = 'failed';
    assert.equal((await post('known', update, 'secret-known')).statusCode, 503);
    answer = 'duplicate';
    assert.equal((await post('known', update, 'secret-known')).statusCode, 200);
    const stats = app.webhookStats() as Record<string, { requests: number; unavailable: number; duplicates: number }>;
    assert.equal(stats.known!.unavailable, 2);
    assert.equal(stats.known!.duplicates, 1);
    assert.ok(stats.known!.requests >= 4);
    assert.equal((await app.inject({ method: 'GET', url: '/webhook/stats' })).statusCode, 404, 'stats are not served on the public port');
  });
});

test('webhook server: while draining, a new call gets 503 with Connection: close and the one in flight finishes', async () => {
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  let draining = false;
  const app = createWebhookServer({
    target: { isWebhookBot: () => true, deliver: async () => (await held, 'journaled' as const) },
    secretTokenFor: () => 's', draining: () => draining,
  });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  try {
    const body = JSON.stringify({ update_id: 1 });
    const headers = { 'content-type': 'application/json', 'x-telegram-bot-api-secret-token': 's' };
    const inFlight = fetch(`${url}/webhook/b`, { method: 'POST', body, headers });
    await waitFor(() => app.webhookStats().b?.requests === 1, 2000, 'the first update in flight');
    draining = true;
    const late = await fetch(`${url}/webhook/b`, { method: 'POST', body, headers });
    assert.equal(late.status, 503);
    assert.equal(late.headers.get('connection'), 'close');
    release();
    assert.equal((await inFlight).status, 200);
  } finally {
    app.server.closeAllConnections();
    await app.close();
  }
});

test('the master\'s fastify servers load no schema compilers: routes serve JSON, and a route given a schema fails at ready', async () => {
  const Fastify = (await import('fastify')).default;
  const ok = Fastify({ schemaController: NO_SCHEMAS });
  ok.get('/x', async () => ({ ok: true, n: 1 }));
  assert.deepEqual((await ok.inject({ url: '/x' })).json(), { ok: true, n: 1 });
  await ok.close();
  const bad = Fastify({ schemaController: NO_SCHEMAS });
  bad.post('/y', { schema: { body: { type: 'object' } } }, async () => ({}));
  await assert.rejects(async () => { await bad.ready(); }, /declare no fastify schemas/);
});

describe('Bot API emulator', () => {
  const em = new BotApiEmulator({ webhookRetryMs: 50 });
  let root: string;
  before(async () => (root = await em.start()));
  after(() => em.stop());

  test('getMe; unknown token 401; malformed token and unknown method 404', async () => {
    const bot = em.createBot('fidelity_bot');
    assert.equal((await new Api(bot.token, { apiRoot: root }).getMe()).username, 'fidelity_bot');
    const call = async (path: string) => (await fetch(`${root}${path}`, { method: 'POST' })).json() as Promise<{ ok: boolean; error_code: number }>;
    assert.deepEqual(await call(`/bot123456:${'A'.repeat(35)}/getMe`), { ok: false, error_code: 401, description: 'Unauthorized' });
    assert.equal((await call('/botnot-a-token/getMe')).error_code, 404);
    assert.deepEqual(await call(`/bot${bot.token}/fooBar`), { ok: false, error_code: 404, description: 'Not Found' });
  });

  test('getUpdates: offset confirms, limit, allowed_updates, long poll wakes on a new update', async () => {
    const bot = em.createBot();
    const api = new Api(bot.token, { apiRoot: root });
    const u1 = em.userSends(bot, 1, 'one');
    em.userSends(bot, 1, 'two');
    em.userClicks(bot, 1, 'btn');
    assert.equal((await api.getUpdates({ limit: 1 })).length, 1);
    assert.deepEqual((await api.getUpdates({ allowed_updates: ['callback_query'] })).map((u) => Object.keys(u)[1]), ['callback_query']);
    assert.equal((await api.getUpdates({ allowed_updates: [] , offset: u1.update_id + 1 })).length, 2, 'offset confirmed the first');
    assert.equal(bot.pending.length, 2);
    await api.getUpdates({ offset: u1.update_id + 3 });
    assert.equal(bot.pending.length, 0);
    const waiting = api.getUpdates({ timeout: 5 });
    setTimeout(() => em.userSends(bot, 1, 'late'), 100);
    const got = await waiting;
    assert.equal(got.length, 1);
    assert.equal((got[0] as { message?: { text?: string } }).message?.text, 'late');
  });

  test('409 Conflict: a second getUpdates ends the first; getUpdates while a webhook is set', async () => {
    const bot = em.createBot();
    const api = new Api(bot.token, { apiRoot: root, maxRetries: 0 });
    const first = api.getUpdates({ timeout: 5 }).then(() => null, (e: unknown) => e);
    await waitFor(() => em.isLongPolling(bot), 2000, 'the first poll waiting');
    const second = api.getUpdates({ timeout: 0 });
    const err = await first;
    assert.ok(err instanceof TelegramApiError && err.errorCode === 409, 'the older request got 409');
    assert.deepEqual(await second, []);
    assert.equal(bot.conflicts, 1);
    await api.setWebhook({ url: 'http://127.0.0.1:9/hook' });
    await assert.rejects(api.getUpdates({}), (e: unknown) => e instanceof TelegramApiError && e.errorCode === 409 && /webhook is active/.test(e.description));
    await api.deleteWebhook({ drop_pending_updates: true });
  });

  test('webhook delivery carries the secret header, redelivers after a non-2xx, and getWebhookInfo reports it', async () => {
    const Fastify = (await import('fastify')).default;
    const seen: Array<{ secret: unknown; id: number }> = [];
    let fail = true;
    const hook = Fastify();
    hook.post('/hook', async (req, reply) => {
      seen.push({ secret: req.headers['x-telegram-bot-api-secret-token'], id: (req.body as Update).update_id });
      if (fail) {
        fail = false;
        return reply.code(500).send('no');
      }
      return { ok: true };
    });
    const url = await hook.listen({ host: '127.0.0.1', port: 0 });
    try {
      const bot = em.createBot();
      const api = new Api(bot.token, { apiRoot: root });
      await api.setWebhook({ url: `${url}/hook`, secret_token: 'abc_DEF-1' });
      const u = em.userSends(bot, 3, 'via hook');
      await waitFor(() => seen.length >= 2 && bot.pending.length === 0, 5000, 'a redelivery after the 500');
      assert.deepEqual(seen, [{ secret: 'abc_DEF-1', id: u.update_id }, { secret: 'abc_DEF-1', id: u.update_id }]);
      const info = await api.getWebhookInfo();
      assert.equal(info.url, `${url}/hook`);
      assert.equal(info.pending_update_count, 0);
      assert.match(info.last_error_message ?? '', /Wrong response from the webhook: 500/);
      await assert.rejects(api.setWebhook({ url: `${url}/hook`, secret_token: 'bad secret!' }), /unallowed characters/);
    } finally {
      await hook.close();
    }
  });

  test('sendMessage and answerCallbackQuery are recorded; bad input answers 400', async () => {
    const bot = em.createBot();
    const api = new Api(bot.token, { apiRoot: root });
    const m = await api.sendMessage({ chat_id: 77, text: 'hello' });
    assert.equal(m.chat.id, 77);
    assert.deepEqual(bot.sent.map((s) => [s.chat_id, s.text]), [[77, 'hello']]);
    await assert.rejects(api.sendMessage({ chat_id: 77, text: '' }), /message text is empty/);
    const click = em.userClicks(bot, 77, 'yes') as { callback_query?: { id: string } };
    assert.equal(await api.answerCallbackQuery({ callback_query_id: click.callback_query!.id, text: 'ok' }), true);
    await assert.rejects(api.answerCallbackQuery({ callback_query_id: click.callback_query!.id }), /query ID is invalid/);
  });
});

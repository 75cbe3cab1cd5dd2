/** The webhook server's optional source allowlist, through fastify's inject() with a real remote address, a proxy's X-Forwarded-For, and bad entries. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createWebhookServer } from '../webhook-server/server.js';
import { sourceAllowlist, TELEGRAM_SOURCES } from '../webhook-server/sources.js';

const update = JSON.stringify({ update_id: 1, message: { message_id: 1, date: 0, chat: { id: 1, type: 'private' }, text: 'hi' } });

test('the allowlist: Telegram\'s ranges, IPv4-mapped IPv6, a proxy trusted only when configured, 403 before the secret is looked at', async () => {
  const inTelegram = sourceAllowlist(['telegram'])!;
  assert.deepEqual(TELEGRAM_SOURCES, ['149.154.160.0/20', '91.108.4.0/22']);
  for (const ip of ['149.154.160.1', '149.154.175.254', '91.108.4.9', '91.108.7.255', '::ffff:149.154.167.220']) assert.equal(inTelegram(ip), true, ip);
  for (const ip of ['149.154.176.0', '91.108.8.0', '127.0.0.1', '10.0.0.1', '::1', '::ffff:127.0.0.1']) assert.equal(inTelegram(ip), false, ip);
  assert.equal(sourceAllowlist([]), null, 'empty: everyone');
  assert.throws(() => sourceAllowlist(['300.1.1.1/8']), /not an address or CIDR range: "300.1.1.1\/8"/);
  assert.throws(() => sourceAllowlist(['10.0.0.0/33']), /not an address or CIDR range/);

  let delivered = 0;
  const make = (trustProxy?: string[]) => createWebhookServer({
    target: { isWebhookBot: () => true, deliver: async () => (delivered++, 'journaled') },
    secretTokenFor: () => 's', allowedSources: ['telegram'], ...(trustProxy ? { trustProxy } : {}),
  });
  const direct = make();
  const post = (app: ReturnType<typeof make>, remoteAddress: string, headers: Record<string, string> = {}) =>
    app.inject({ method: 'POST', url: '/webhook/a', payload: update, remoteAddress, headers: { 'content-type': 'application/json', 'x-telegram-bot-api-secret-token': 's', ...headers } });
  assert.equal((await post(direct, '149.154.167.220')).statusCode, 200);
  const refused = await post(direct, '203.0.113.5');
  assert.equal(refused.statusCode, 403);
  assert.match(refused.body, /source address not allowed/);
  assert.equal((await post(direct, '203.0.113.5', { 'x-forwarded-for': '149.154.167.220' })).statusCode, 403, 'X-Forwarded-For from an untrusted peer is ignored');
  const proxied = make(['127.0.0.1']);
  assert.equal((await post(proxied, '127.0.0.1', { 'x-forwarded-for': '149.154.167.220' })).statusCode, 200, 'the trusted proxy names the client');
  assert.equal((await post(proxied, '127.0.0.1', { 'x-forwarded-for': '203.0.113.5' })).statusCode, 403);
  assert.equal(delivered, 2);
  await direct.close();
  await proxied.close();
});

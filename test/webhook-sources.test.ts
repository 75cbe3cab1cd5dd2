/** The webhook server's optional source allowlist, through fastify's inject() with a real remote address, a proxy's X-Forwarded-For, and bad entries. */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { test } from 'node:test';
import { createWebhookServer } from '../webhook-server/server.js';
import { sourceAllowlist, TELEGRAM_SOURCES } from '../common/source-allowlist.js';
import { waitFor } from './helpers/wait.js';

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

/** Open `n` TCP connections from `localAddress` that send nothing; resolves once each is connected or refused. */
async function hold(port: number, localAddress: string, n: number): Promise<net.Socket[]> {
  return Promise.all(Array.from({ length: n }, () => new Promise<net.Socket>((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress });
    s.on('error', () => resolve(s));
    s.on('connect', () => resolve(s));
  })));
}

/** POST one update from `localAddress` on a fresh connection; resolves with the status (0: no answer). */
function postFrom(port: number, localAddress: string, id: number): Promise<number> {
  return new Promise((resolve) => {
    const body = JSON.stringify({ update_id: id, message: { message_id: id, date: 0, chat: { id: 1, type: 'private' }, text: 'hi' } });
    const req = http.request({ host: '127.0.0.1', port, localAddress, path: '/webhook/a', method: 'POST', agent: false, timeout: 5000,
      headers: { 'content-type': 'application/json', 'x-telegram-bot-api-secret-token': 's', 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
    req.end(body);
  });
}

test('one source cannot starve the port: 1,100 connections from outside the allowlist, or from one allowed source, and a neighbour\'s 90 deliveries all succeed', async () => {
  let delivered = 0;
  const app = createWebhookServer({
    target: { isWebhookBot: () => true, deliver: async () => (delivered++, 'journaled') },
    secretTokenFor: () => 's', allowedSources: ['127.0.0.1', '127.0.0.3'], ingress: { firstByteTimeoutMs: 60_000 },
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const port = (app.server.address() as net.AddressInfo).port;
  const sockets: net.Socket[] = [];
  try {
    // A stranger: closed when it connects, before it holds one of the 1,024 slots.
    sockets.push(...await hold(port, '127.0.0.2', 1100));
    const first = await Promise.all(Array.from({ length: 90 }, (_, i) => postFrom(port, '127.0.0.1', i + 1)));
    assert.deepEqual(first.filter((c) => c !== 200), [], 'every delivery from the allowed source answered 200');
    // An allowed but greedy source: at most WEBHOOK_MAX_CONNECTIONS_PER_SOURCE (512, half the port) of its connections stay.
    sockets.push(...await hold(port, '127.0.0.3', 1100));
    await waitFor(async () => ((await new Promise<number>((r) => app.server.getConnections((_e, n) => r(n)))) <= 512 ? true : null), 10_000, 'the greedy source held to its share');
    const second = await Promise.all(Array.from({ length: 90 }, (_, i) => postFrom(port, '127.0.0.1', 1000 + i)));
    assert.deepEqual(second.filter((c) => c !== 200), [], 'and again with the greedy source connected');
    assert.equal(delivered, 180);
  } finally {
    for (const s of sockets) s.destroy();
    await app.close();
  }
});

test('a connection that sends nothing is closed after firstByteTimeoutMs', async () => {
  const app = createWebhookServer({ target: { isWebhookBot: () => true, deliver: async () => 'journaled' }, secretTokenFor: () => 's', ingress: { firstByteTimeoutMs: 200 } });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const port = (app.server.address() as net.AddressInfo).port;
  try {
    const [s] = await hold(port, '127.0.0.1', 1);
    await new Promise<void>((resolve) => s!.once('close', () => resolve()));
    assert.equal(await postFrom(port, '127.0.0.1', 1), 200, 'a connection that speaks is served');
  } finally {
    await app.close();
  }
});

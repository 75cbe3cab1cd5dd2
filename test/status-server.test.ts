/**
 * The status server's guards, on real HTTP over loopback with a synthetic fleet (the
 * real status rows of `newChild` records): STATUS_AUTH (bearer and basic, /health
 * open), the security headers, the config rule for a non-loopback STATUS_HOST, the
 * per-bot history ring, and the event stream dropping a client that stopped reading
 * while a reading one stays.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { describe, test } from 'node:test';
import { authorized, isLoopbackHost, parseStatusAuth } from '../common/status-auth.js';
import { loadConfig } from '../config/load.js';
import { childStatus, newChild } from '../master/lifecycle/child.js';
import { createFleetHistory, HISTORY_SLOTS } from '../master/surfaces/fleet-history.js';
import { createStatusServer, fleetStatus, type StatusServerOptions } from '../master/surfaces/status-server.js';
import { waitFor } from './helpers/wait.js';

const TOKEN = 'test-status-token-0123456789';

/** `n` bots as the supervisor would list them, with long names (big snapshots). */
function fleetOf(n: number) {
  const workers = Array.from({ length: n }, (_, i) => childStatus(newChild(`bot${i}`, `bot number ${i} `.padEnd(120, '-'), null), 0, 3_600_000));
  return fleetStatus(workers, {
    pid: process.pid, uptimeMs: 1, mode: 'polling', version: 'test', capacity: n, workerSchedPolicy: 'other',
    isolation: { uid: false, permission: false, envAllowlist: true, notes: [] },
  });
}

async function serve(o: { auth?: string; bots?: number; tickMs?: number; metrics?: StatusServerOptions['metrics'] } = {}) {
  const status = fleetOf(o.bots ?? 3);
  const app = createStatusServer({
    status: () => status, metrics: o.metrics ?? { contentType: 'text/plain', metrics: async () => '' }, unhealthy: () => null,
    ...(o.auth ? { auth: parseStatusAuth(o.auth) } : {}),
    page: {
      describe: () => { throw new Error('not used'); }, memoryCapBytes: 150 * 1048576, restartWindowMax: 5, maxClients: 8,
      ...(o.tickMs ? { tickMs: o.tickMs } : {}),
    },
  });
  const addr = await app.listen({ host: '127.0.0.1', port: 0 });
  return { app, base: addr, port: Number(new URL(addr).port), close: async () => { app.page?.close(); await app.close(); } };
}

const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

describe('status server guards', () => {
  test('STATUS_AUTH bearer: every route but /health needs it; a browser may send it as a Basic password', async () => {
    const s = await serve({ auth: `bearer:${TOKEN}` });
    try {
      const get = (path: string, authorization?: string) => fetch(s.base + path, authorization ? { headers: { authorization } } : {});
      for (const path of ['/', '/page.js', '/api/workers/status', '/metrics', '/api/events', '/webhook/stats']) {
        const r = await get(path);
        assert.equal(r.status, 401, path);
        assert.match(String(r.headers.get('www-authenticate')), /^Basic realm="botfleet"/);
        assert.ok(!(await r.text()).includes(TOKEN));
      }
      assert.equal((await get('/health')).status, 200, '/health stays open for probes');
      assert.equal((await get('/api/workers/status', `Bearer ${TOKEN}`)).status, 200);
      assert.equal((await get('/', basic('anyone', TOKEN))).status, 200);
      assert.equal((await get('/', `Bearer ${TOKEN}x`)).status, 401);
      assert.equal((await get('/', basic('anyone', 'wrong-password-0123456'))).status, 401);
      assert.equal((await get('/', 'Bearer')).status, 401);
      assert.equal((await get('/', `Digest ${TOKEN}`)).status, 401);
    } finally {
      await s.close();
    }
  });

  test('STATUS_AUTH basic: exactly that user and password', () => {
    const auth = parseStatusAuth(`basic:ops:${TOKEN}`);
    assert.ok(authorized(basic('ops', TOKEN), auth));
    assert.ok(!authorized(basic('dev', TOKEN), auth));
    assert.ok(!authorized(`Bearer ${TOKEN}`, auth), 'a bearer token is not the basic pair');
    assert.ok(!authorized('Basic %%%', auth));
    assert.ok(!authorized(undefined, auth));
    for (const bad of ['bearer:short', `token:${TOKEN}`, 'basic:ops', `basic::${TOKEN}`, 'basic:ops:short']) {
      const secret = bad.slice(bad.lastIndexOf(':') + 1);
      assert.throws(() => parseStatusAuth(bad), (e: Error) => /^STATUS_AUTH/.test(e.message) && !e.message.includes(secret), bad);
    }
  });

  test('a non-loopback STATUS_HOST needs STATUS_AUTH; a bad STATUS_AUTH is refused without echoing it', () => {
    assert.throws(() => loadConfig({}, { STATUS_HOST: '0.0.0.0' }), /STATUS_AUTH is required when STATUS_HOST \(0\.0\.0\.0\) is not loopback/);
    assert.equal(loadConfig({}, { STATUS_HOST: '0.0.0.0', STATUS_AUTH: `bearer:${TOKEN}` }).statusAuth, `bearer:${TOKEN}`);
    assert.throws(() => loadConfig({}, { STATUS_AUTH: 'bearer:tiny-secret' }), (e: Error) => /STATUS_AUTH/.test(e.message) && !e.message.includes('tiny-secret'));
    for (const h of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost']) assert.ok(isLoopbackHost(h), h);
    for (const h of ['0.0.0.0', '::', '10.0.0.1', 'example.com']) assert.ok(!isLoopbackHost(h), h);
  });

  test('every answer carries a strict CSP, nosniff and no-referrer; the page has no inline script', async () => {
    const s = await serve();
    try {
      for (const path of ['/', '/page.js', '/api/workers/status', '/health', '/nope']) {
        const r = await fetch(s.base + path);
        const csp = String(r.headers.get('content-security-policy'));
        assert.match(csp, /default-src 'none'/, path);
        assert.match(csp, /script-src 'self'(;|$)/, path);
        assert.ok(!csp.includes('unsafe-inline'));
        assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
        assert.equal(r.headers.get('referrer-policy'), 'no-referrer');
      }
      const html = await (await fetch(s.base + '/')).text();
      assert.ok(!/<script(?![^>]*\bsrc=)/i.test(html), 'every script is a file');
      assert.ok(!/\son[a-z]+=/i.test(html) && !/style=/i.test(html), 'no inline handlers or styles');
      assert.ok(!/https?:\/\//.test(html.replace('http://www.w3.org', '')), 'nothing from another origin');
    } finally {
      await s.close();
    }
  });

  test('the event stream drops a client that stopped reading and keeps one that reads', { timeout: 60_000 }, async () => {
    // 300 bots with long names: ~100 KB a snapshot every 20 ms fills a stuck socket's kernel buffers in about a second.
    const s = await serve({ bots: 300, tickMs: 20 });
    try {
      const request = `GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:${s.port}\r\n\r\n`;
      const stuck = net.connect(s.port, '127.0.0.1', () => stuck.write(request));
      stuck.pause(); // never reads
      stuck.on('error', () => {});
      let read = 0;
      const reader = net.connect(s.port, '127.0.0.1', () => reader.write(request));
      reader.on('data', (d: Buffer) => (read += d.length));
      const stream = s.app.page!.stream;
      await waitFor(() => stream.clients() === 2, 5_000, 'both streams open');
      await waitFor(() => stream.dropped() === 1, 30_000, 'the stuck client dropped');
      assert.equal(stream.clients(), 1, 'the reading client stays');
      const before = read;
      await waitFor(() => read > before + 100_000, 5_000, 'and keeps receiving snapshots');
      reader.destroy();
      stuck.destroy();
      await waitFor(() => stream.clients() === 0, 5_000, 'closed streams are forgotten');
    } finally {
      await s.close();
    }
  });
});

describe('status server routes (node:http, fastify\'s rules)', () => {
  test('HEAD answers like GET without a body; the query string is not the path; unknown routes and bad escapes are JSON 404s', async () => {
    const s = await serve();
    try {
      const head = await fetch(s.base + '/api/workers/status', { method: 'HEAD' });
      assert.equal(head.status, 200);
      assert.match(String(head.headers.get('content-type')), /^application\/json/);
      assert.ok(Number(head.headers.get('content-length')) > 100, 'HEAD tells the GET body\'s length');
      assert.equal(await head.text(), '');
      const q = await fetch(s.base + '/api/workers/status?x=1&y');
      assert.equal(q.status, 200);
      assert.equal(((await q.json()) as { workers: unknown[] }).workers.length, 3);
      for (const path of ['/nope', '/api/workers/status/extra', '/api/bots/%E0%A4%A', '/api/bots/a/b']) {
        const r = await fetch(s.base + path);
        assert.equal(r.status, 404, path);
        assert.equal(typeof ((await r.json()) as { error: string }).error, 'string', path);
      }
      assert.equal((await fetch(s.base + '/health', { method: 'POST' })).status, 404, 'a route answers its method only');
      const long = await fetch(s.base + '/' + 'a'.repeat(3000));
      assert.equal(long.status, 414);
      const thrown = await fetch(s.base + '/api/bots/x');
      assert.equal(thrown.status, 500, 'a handler that throws is a 500');
      assert.deepEqual(await thrown.json(), { error: 'not used' });
      assert.equal(thrown.headers.get('x-content-type-options'), 'nosniff', 'errors carry the headers too');
    } finally {
      await s.close();
    }
  });

  test('a /metrics body is released once its response ended: read whole, or the client gone halfway', async () => {
    const body = Buffer.alloc(16 * 1048576, 'x'); // more than the socket buffers hold: the second client leaves mid-body
    const released: unknown[] = [];
    const s = await serve({ metrics: { contentType: 'text/plain', metrics: async () => body, release: (b) => released.push(b) } });
    try {
      const r = await fetch(s.base + '/metrics');
      assert.equal((await r.arrayBuffer()).byteLength, body.length);
      await waitFor(() => released.length === 1, 5_000, 'the release after a whole read');
      assert.equal(released[0], body);
      const socket = net.connect(s.port, '127.0.0.1');
      socket.write(`GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:${s.port}\r\n\r\n`);
      await once(socket, 'data');
      assert.equal(released.length, 1, 'not released while the body is still being sent');
      socket.destroy();
      await waitFor(() => released.length === 2, 5_000, 'the release after the client left');
    } finally {
      await s.close();
    }
  });

  test('close() ends idle keep-alive connections and resolves; a request after it is refused', async () => {
    const s = await serve();
    const socket = net.connect(s.port, '127.0.0.1');
    let answer = '';
    socket.on('data', (d: Buffer) => (answer += d.toString()));
    const ended = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    socket.write(`GET /health HTTP/1.1\r\nHost: 127.0.0.1:${s.port}\r\n\r\n`);
    await waitFor(() => answer.includes('"ok":true'), 5_000, 'the keep-alive answer');
    await s.close();
    await ended; // the idle keep-alive connection was closed by the server
    await assert.rejects(fetch(s.base + '/health'), 'the port is closed');
  });
});

describe('fleet history', () => {
  const row = (handled: number, failed = 0, rssBytes = 1000) => ({ botId: 'b', rssBytes, updates: { handled, failed } });

  test('per-minute rates from the sample a minute back; sparkline deltas; bounded; a gone bot forgotten', () => {
    const h = createFleetHistory();
    assert.equal(h.perMinute(row(0), 0), null, 'nothing sampled yet');
    for (let i = 0; i <= 12; i++) h.sample(i * 10_000, [row(i * 5, i)]);
    // At 120 s: the sample of 60 s ago had 30 handled, 6 failed.
    assert.deepEqual(h.perMinute(row(60, 12), 120_000), { messages: 30, errors: 6 });
    const s = h.series('b');
    assert.equal(s.at.length, 13);
    assert.deepEqual(s.handled.slice(0, 3), [0, 5, 5]);
    for (let i = 13; i < HISTORY_SLOTS + 50; i++) h.sample(i * 10_000, [row(i * 5)]);
    assert.equal(h.series('b').at.length, HISTORY_SLOTS, 'at most HISTORY_SLOTS samples a bot');
    assert.equal(h.series('b').at[0], 50 * 10_000, 'the oldest dropped first');
    h.sample(10_000_000, []);
    assert.equal(h.series('b').at.length, 0);
  });
});

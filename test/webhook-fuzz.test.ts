/**
 * The public webhook port under hostile input: a few thousand requests from a
 * seeded generator against a real master (truncated JSON, huge and deep bodies,
 * wrong types, null kinds, long, unicode and missing secrets, path tricks, stalled
 * bodies), each answered with the status its kind must get; afterwards the master
 * runs, its bot answers, and the journal's file holds exactly the valid updates.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { withFleet } from './helpers/fleet.js';
import { journalQuery } from './helpers/journal-file.js';
import { waitFor } from './helpers/wait.js';

/** mulberry32: a small seeded PRNG, so a failing case can be replayed. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Case { kind: string; path: string; body: string | Buffer; secret: string | null; expect: number[]; validId?: number }

/** Send one request over raw TCP (paths and header bytes exactly as given); resolves with the status, or 0 when the server closed without one. */
function rawRequest(port: number, c: Case): Promise<number> {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    const body = typeof c.body === 'string' ? Buffer.from(c.body) : c.body;
    let head = `POST ${c.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n`;
    const headBuf = [Buffer.from(head)];
    if (c.secret !== null) headBuf.push(Buffer.from('X-Telegram-Bot-Api-Secret-Token: '), Buffer.from(c.secret, 'utf8'), Buffer.from('\r\n'));
    headBuf.push(Buffer.from('\r\n'));
    head = '';
    let got = '';
    sock.setTimeout(20_000, () => sock.destroy());
    sock.on('data', (d) => (got += d.toString('latin1')));
    sock.on('error', () => undefined);
    sock.on('close', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(got)?.[1] ?? 0)));
    sock.write(Buffer.concat([...headBuf, body]));
  });
}

test('webhook fuzzing: each hostile request gets its 4xx, the master lives, the journal holds only the valid updates', async () => {
  await withFleet({ WEBHOOK_REQUEST_TIMEOUT_MS: '1500' }, { webhook: true }, async (fleet) => {
    await fleet.addBot('hook', { mode: 'webhook' });
    await fleet.startMaster();
    await fleet.waitRunning(['hook']);
    const hook = fleet.tg('hook').webhook!;
    const url = new URL(hook.url);
    const port = Number(url.port);
    const secret = hook.secretToken!;
    const rnd = prng(20261202);
    const pick = <T>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)]!;
    let nextId = 900_000;
    const update = (id: number) => JSON.stringify({ update_id: id, message: { message_id: id, date: 0, chat: { id: 5, type: 'private' }, from: { id: 5, is_bot: false, first_name: 'f' }, text: `v${id}` } });
    const p = url.pathname;
    const cases: Case[] = [];
    for (let i = 0; i < 3000; i++) {
      const id = nextId++;
      const r = rnd();
      if (r < 0.1) cases.push({ kind: 'valid', path: p, body: update(id), secret, expect: [200], validId: id });
      else if (r < 0.25) {
        const full = update(id);
        cases.push({ kind: 'truncated', path: p, body: full.slice(0, 1 + Math.floor(rnd() * (full.length - 2))), secret, expect: [400] });
      } else if (r < 0.35) {
        const bad = pick(['"7"', '-1', '1.5', 'null', '{}', '[]', '1e400', '9007199254740993', 'true']);
        cases.push({ kind: 'wrong update_id', path: p, body: `{"update_id":${bad},"message":{"text":"x"}}`, secret, expect: [400] });
      } else if (r < 0.45) {
        cases.push({ kind: 'not an object', path: p, body: pick(['[]', '[1,2]', '5', '"update"', 'null', 'true', '', ' ', '\u0000']), secret, expect: [400] });
      } else if (r < 0.55) {
        const kind = pick(['message', 'callback_query', 'edited_message', 'x'.repeat(300)]);
        cases.push({ kind: 'null kind', path: p, body: `{"update_id":${id},"${kind}":${pick(['null', '5', '"s"', '[]', 'false'])}}`, secret, expect: [400] });
      } else if (r < 0.6) {
        const depth = 200 + Math.floor(rnd() * 20_000);
        cases.push({ kind: 'deep', path: p, body: `{"update_id":${id},"message":${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}}`, secret, expect: [400] });
      } else if (r < 0.7) {
        cases.push({ kind: 'missing secret', path: p, body: update(id), secret: null, expect: [401] });
      } else if (r < 0.78) {
        const s = pick([secret + 'x', secret.slice(0, -1), 'x'.repeat(8000), '', secret.toUpperCase() === secret ? 'nope' : secret.toUpperCase()]);
        cases.push({ kind: 'wrong secret', path: p, body: update(id), secret: s, expect: [401] });
      } else if (r < 0.83) {
        // Bytes outside latin1 in a header: node's parser may refuse the request (400) or pass it as a wrong secret (401).
        cases.push({ kind: 'unicode secret', path: p, body: update(id), secret: pick(['sëcret☃', secret + '\u00e9', '日本語'.repeat(50)]), expect: [400, 401] });
      } else if (r < 0.95) {
        const trick = pick([`${p}/..`, `${p}/../hook`, '/webhook/../webhook/hook', '/webhook//hook', '/webhook/HOOK', '/webhook/hook%2F', '/webhook/%2e%2e', '/webhook/hook/extra',
          '/webhook/', '/webhook', '/Webhook/hook', `/webhook/${'a'.repeat(3000)}`, '/webhook/hook%00', '/webhook/h%C3%B6ok', '/api/workers/status', '/metrics', '/webhook/stats']);
        cases.push({ kind: 'path trick', path: trick, body: update(id), secret, expect: [400, 404, 414] });
      } else {
        cases.push({ kind: 'huge', path: p, body: `{"update_id":${id},"message":{"text":"${'x'.repeat(1024 * 1024 + Math.floor(rnd() * 100_000))}"}}`, secret, expect: [413, 0] });
      }
    }
    // Stalled bodies: headers and part of the body, then nothing. Each socket is closed at the request deadline.
    const stalled = await Promise.all(Array.from({ length: 20 }, () => new Promise<number>((resolve) => {
      const t0 = Date.now();
      const sock = net.connect(port, '127.0.0.1');
      sock.on('error', () => undefined);
      sock.on('close', () => resolve(Date.now() - t0));
      sock.resume(); // read the 408 and the close (a paused socket never sees the end)
      sock.setTimeout(30_000, () => sock.destroy());
      sock.write(`POST ${p} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Telegram-Bot-Api-Secret-Token: ${secret}\r\nContent-Length: 5000\r\n\r\n{"update_id":`);
    })));
    for (const ms of stalled) assert.ok(ms < 10_000, `a stalled body held its socket ${ms} ms`);

    // A few at a time, each on its own connection: the server sees them interleaved.
    const results: Array<{ c: Case; status: number }> = [];
    let next = 0;
    await Promise.all(Array.from({ length: 16 }, async () => {
      while (next < cases.length) {
        const c = cases[next++]!;
        results.push({ c, status: await rawRequest(port, c) });
      }
    }));
    const wrong = results.filter(({ c, status }) => !c.expect.includes(status));
    assert.deepEqual(wrong.slice(0, 5).map(({ c, status }) => ({ kind: c.kind, path: c.path.slice(0, 60), body: c.body.slice(0, 60).toString(), status, expect: c.expect })), [], `${wrong.length} answered wrongly`);

    assert.equal(fleet.master!.exitCode, null, 'the master lives');
    const health = await new Promise<number>((resolve, reject) => http.get(`http://127.0.0.1:${port}/health`, (res) => (res.resume(), resolve(res.statusCode!))).on('error', reject));
    assert.equal(health, 200);
    assert.equal(await fleet.chat('hook', 6, 'still here'), 'still here');
    const valid = new Set(cases.filter((c) => c.validId !== undefined).map((c) => c.validId!));
    await waitFor(() => journalQuery(fleet.home, "SELECT count(*) AS n FROM pending WHERE bot = 'hook'")[0]!.n === 0, 10_000, 'every valid update acked');
    const ids = journalQuery(fleet.home, "SELECT update_id FROM acked WHERE bot = 'hook' AND update_id >= 900000").map((r) => r.update_id as number);
    assert.deepEqual(ids.sort((a, b) => a - b), [...valid].sort((a, b) => a - b), 'the journal saw exactly the valid updates');
    assert.equal((await fleet.worker('hook'))!.restarts, 0, 'the worker never restarted');
  });
});

/**
 * The bots API's document (config/bots-api.ts), its fetch (master/store/bots-api-source.ts)
 * against a real HTTP server on loopback, and the registry's copy of the last good list
 * (master/store/registry-sync.ts) on a real SQLite file.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { BotsApiDocumentError, MAX_API_ENTRIES, parseBotsDocument } from '../config/bots-api.js';
import { fetchBots, MAX_BODY_BYTES } from '../master/store/bots-api-source.js';
import { openRegistry } from '../master/store/registry.js';

const fakeToken = () => `${crypto.randomInt(100000, 999999999)}:${crypto.randomBytes(27).toString('base64url').slice(0, 35)}`;
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'botfleet-unit-'));

test('a document: defaults filled, a bad entry becomes that bot\'s reason, an entry without an id is rejected', () => {
  const good = fakeToken();
  const doc = parseBotsDocument({
    bots: [
      { id: 'shop', token: good },
      { id: 'news', name: 'News', token: 'not-a-token-secret-xyz', handler: 'echo' },
      { id: 'evil', token: fakeToken(), handler: '../../../etc/passwd' },
      { name: 'no id', token: fakeToken() },
      { id: 'shop', token: fakeToken() },
      { id: 'typed', token: fakeToken(), enabled: 'yes', settings: [1] },
      42,
    ],
  });
  assert.deepEqual(doc.bots.map((b) => b.id), ['shop', 'news', 'evil', 'typed']);
  assert.deepEqual(doc.bots[0], { id: 'shop', name: 'shop', token: good, mode: null, handler: 'echo', settings: {}, enabled: true, apiRoot: null, invalid: null });
  assert.match(doc.bots[1]!.invalid ?? '', /^bots API: token does not look like a Telegram bot token/);
  assert.ok(!doc.bots[1]!.invalid!.includes('not-a-token-secret-xyz'), 'the reason never echoes the token');
  assert.match(doc.bots[2]!.invalid ?? '', /handler .* must be a built-in name or a path inside the home/);
  assert.equal(doc.bots[3]!.invalid, 'bots API: settings must be a JSON object');
  assert.deepEqual(doc.rejected.map((r) => r.replace(/:.*/, '')), ['entry 3', 'entry 4', 'entry 6']);
  assert.deepEqual(parseBotsDocument([{ id: 'bare', token: good }]).bots.map((b) => b.id), ['bare']);
  const spawner = parseBotsDocument([{ id: 'spawner', token: fakeToken(), settings: { allowChildProcess: true } }]).bots[0]!;
  assert.match(spawner.invalid ?? '', /allowChildProcess and settings.allowWorkerThreads are set by an operator/, 'what escapes the permission model is never the API\'s to grant');
  assert.throws(() => parseBotsDocument({ bot: [] }), BotsApiDocumentError);
  assert.throws(() => parseBotsDocument(new Array(MAX_API_ENTRIES + 1).fill({})), /more than/);
});

test('the registry keeps the API list: only changes are written, CLI rows win, API rows are changed in the API', () => {
  const dir = tmp();
  const file = path.join(dir, 'botfleet.db');
  const r = openRegistry(file, crypto.randomBytes(32));
  const watcher = new Database(file, { readonly: true });
  const version = () => watcher.pragma('data_version', { simple: true }) as number;
  try {
    const local = r.add({ id: 'mine', name: 'Mine', token: fakeToken() });
    const a = fakeToken();
    const doc = parseBotsDocument({ bots: [{ id: 'a', token: a, settings: { greeting: 'hi' } }, { id: 'b', token: fakeToken(), enabled: false }, { id: local, token: fakeToken() }] });
    assert.deepEqual(r.syncFromApi(doc.bots, '"v1"'), { added: ['a', 'b'], changed: [], removed: [], shadowed: ['mine'] });
    assert.equal(r.apiEtag(), '"v1"');
    const v = version();
    assert.deepEqual(r.syncFromApi(doc.bots, '"v1"'), { added: [], changed: [], removed: [], shadowed: ['mine'] });
    assert.equal(version(), v, 'an unchanged list writes nothing');
    const loaded = r.load();
    assert.equal(loaded.specs.find((s) => s.id === 'a')?.token, a);
    assert.deepEqual(loaded.specs.find((s) => s.id === 'a')?.settings, { greeting: 'hi' });
    assert.equal(loaded.specs.find((s) => s.id === 'b')?.enabled, false);
    assert.equal(r.list().find((b) => b.id === 'mine')?.source, 'local');
    assert.equal(r.list().find((b) => b.id === 'a')?.source, 'api');
    assert.ok(!fs.readFileSync(file).includes(a), 'the token is stored encrypted');

    const next = parseBotsDocument({ bots: [{ id: 'a', token: a, settings: { greeting: 'hello' } }, { id: 'c', token: 'broken' }] });
    assert.deepEqual(r.syncFromApi(next.bots, null), { added: ['c'], changed: ['a'], removed: ['b'], shadowed: [] });
    assert.equal(r.apiEtag(), null);
    assert.match(r.load().invalid.find((b) => b.id === 'c')?.reason ?? '', /^bots API: token/);
    assert.throws(() => r.setEnabled('a', false), /comes from the bots API/);
    assert.throws(() => r.update('a', { name: 'x' }), /comes from the bots API/);
    r.syncFromApi(next.bots, '"v2"');
    r.remove('a');
    assert.equal(r.apiEtag(), null, 'removing an API bot makes the next poll fetch the whole list');
    assert.ok(r.list().some((b) => b.id === 'mine'));
  } finally {
    watcher.close();
    r.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/** A bots API on loopback whose answer the test sets; records each request's headers. */
async function apiServer(answer: (req: http.IncomingMessage, res: http.ServerResponse) => void) {
  const requests: http.IncomingHttpHeaders[] = [];
  const server = http.createServer((req, res) => {
    requests.push(req.headers);
    answer(req, res);
  });
  server.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const url = `http://user:pw-secret@127.0.0.1:${(server.address() as AddressInfo).port}/bots?key=query-secret`;
  return { url, requests, close: () => new Promise((r) => server.close(r)) };
}

test('fetch: ETag and If-None-Match, bearer, retries of a 5xx, no retry of a 4xx, a capped body, no secret in errors', async () => {
  let calls = 0;
  const api = await apiServer((req, res) => {
    calls++;
    if (req.url?.startsWith('/bots') !== true) return void res.writeHead(404).end();
    if (calls === 1) return void res.writeHead(503).end();
    if (req.headers['if-none-match'] === '"e1"') return void res.writeHead(304).end();
    res.writeHead(200, { 'content-type': 'application/json', etag: '"e1"' }).end(JSON.stringify({ bots: [{ id: 'x', token: fakeToken() }] }));
  });
  try {
    const first = await fetchBots({ url: api.url, bearer: 'api-bearer', etag: null, minRetryMs: 10 });
    assert.equal(calls, 2, 'the 503 was retried');
    assert.ok(!first.unchanged && first.etag === '"e1"' && first.document.bots[0]?.id === 'x');
    assert.equal(api.requests[1]!.authorization, 'Bearer api-bearer');
    assert.deepEqual(await fetchBots({ url: api.url, etag: '"e1"', minRetryMs: 10 }), { unchanged: true });
    assert.equal(api.requests.at(-1)!['if-none-match'], '"e1"');
    assert.equal(api.requests.at(-1)!.authorization, `Basic ${Buffer.from('user:pw-secret').toString('base64')}`, 'userinfo becomes Basic authentication');
    const before = calls;
    const notFound = await fetchBots({ url: api.url.replace('/bots', '/nothing'), etag: null, minRetryMs: 10 }).catch((e: Error) => e);
    assert.equal(calls - before, 1, 'a 404 is not retried');
    assert.match(String(notFound), /HTTP 404/);
    for (const e of [notFound]) assert.ok(!/pw-secret|query-secret/.test(String(e)), 'no secret of the URL in an error');
  } finally {
    await api.close();
  }
  const huge = await apiServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    const chunk = Buffer.alloc(1024 * 1024, 0x20);
    let sent = 0;
    const more = () => {
      while (sent <= MAX_BODY_BYTES + chunk.length) {
        sent += chunk.length;
        if (!res.write(chunk)) return void res.once('drain', more);
      }
      res.end();
    };
    more();
  });
  try {
    await assert.rejects(fetchBots({ url: huge.url, etag: null, minRetryMs: 10 }), /more than 16777216 bytes/);
  } finally {
    await huge.close();
  }
  const down = await fetchBots({ url: huge.url, etag: null, retries: 1, minRetryMs: 10 }).catch((e: Error) => e);
  assert.match(String(down), /cannot reach it/);
});

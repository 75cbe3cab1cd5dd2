/**
 * The store wing's behaviour, one suite run once per engine: SQLite (the registry's
 * database in a temporary home) and PostgreSQL (a real server the test starts itself from
 * the machine's binaries, as `nobody` under root: scripts/postgres.ts). Then what only the
 * PostgreSQL engine has: migrations under an advisory lock, a newer schema refused, an
 * unreachable server failing in bounded time without its password, and an outage survived.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Update } from 'node-telegram-bot-api';
import { MAX_DEAD_LETTERS_PER_BOT } from '../master/store/dead-letters.js';
import { inTransaction, redactUrl } from '../master/store/pg/connect.js';
import { PG_SCHEMA_VERSION } from '../master/store/pg/migrations.js';
import { openPgStore } from '../master/store/pg/pg-store.js';
import { JOURNAL_CHANNEL, pgJournalEngine } from '../master/store/pg/pg-journal.js';
import { listenPg } from '../master/store/pg/listen.js';
import { openRegistry } from '../master/store/registry.js';
import { openSqliteStore, type Store } from '../master/store/store.js';
import { postgresBinDir, POSTGRES_MISSING, startLocalPostgres, type LocalPostgres } from '../scripts/postgres.js';

/** A token of the right shape (an emulator-style stand-in, worthless anywhere): `<digits>:<35 characters>`. */
const tok = (s: string) => `123456:AAAA-${(s + '_'.repeat(35)).slice(0, 30)}`;
/** The token key of the tests' stores (random per run). */
const TEST_KEY = crypto.randomBytes(32);
const noPostgres = postgresBinDir() === null ? POSTGRES_MISSING : false;
const update = (id: number, text = 'hello'): Update => ({ update_id: id, message: { message_id: id, date: 0, chat: { id: 7, type: 'private' }, text } }) as Update;

interface Engine {
  name: string;
  skip: string | false;
  /** A fresh store (a database of its own), with `key` as the token key (TEST_KEY by default). */
  open(key?: Buffer): Promise<Store>;
  /** Another store on the last fresh one's database (a second master, or the CLI), with `key`. */
  reopen(key?: Buffer): Promise<Store>;
  done(): Promise<void>;
}

function sqliteEngine(): Engine {
  const dirs: string[] = [];
  const at = (key: Buffer) => openSqliteStore(openRegistry(path.join(dirs.at(-1)!, 'botfleet.db'), key));
  return {
    name: 'sqlite', skip: false,
    async open(key = TEST_KEY) {
      dirs.push(fs.mkdtempSync(path.join(os.tmpdir(), 'botfleet-store-')));
      return at(key);
    },
    reopen: async (key = TEST_KEY) => at(key),
    async done() {
      for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
    },
  };
}

function postgresEngine(server: () => LocalPostgres): Engine {
  let n = 0;
  const at = (key: Buffer) => openPgStore({ url: server().url.replace(/\/postgres$/, `/store_${process.pid}_${n}`), key });
  return {
    name: 'postgres', skip: noPostgres,
    async open(key = TEST_KEY) {
      // A database of its own per test: the suite's tests do not see each other's rows.
      server().psql(`CREATE DATABASE store_${process.pid}_${++n}`);
      return at(key);
    },
    reopen: async (key = TEST_KEY) => at(key),
    async done() {},
  };
}

let pg: LocalPostgres | null = null;
before(async () => {
  if (!noPostgres) pg = await startLocalPostgres();
});
after(async () => {
  await pg?.stop();
});

for (const engine of [sqliteEngine(), postgresEngine(() => pg!)]) {
  describe(`the store on ${engine.name}`, { skip: engine.skip }, () => {
    after(() => engine.done());

    test('bots: added (an id asked for, or one made of the name), listed without tokens, changed, disabled, removed; a taken id refused', async () => {
      const s = await engine.open();
      try {
        assert.equal(await s.bots.add({ id: 'alpha', name: 'Alpha', token: tok('alpha-token-000000000000000') }), 'alpha');
        assert.equal(await s.bots.add({ name: 'Shop Bot', token: tok('shop-token-0000000000000000'), handler: 'echo', settings: { a: 1 } }), 'shop-bot');
        assert.equal(await s.bots.add({ name: 'Shop Bot', token: tok('shop2-token-000000000000000') }), 'shop-bot-2');
        await assert.rejects(s.bots.add({ id: 'alpha', name: 'Again', token: tok('again-token-00000000000000') }), (e: Error & { code?: string }) => e.code === 'BF_ERR_BAD_INPUT' && /already exists/.test(e.message));
        const listed = await s.bots.list();
        assert.deepEqual(listed.map((b) => [b.id, b.name, b.enabled, b.source, b.settings]), [['alpha', 'Alpha', true, 'local', '{}'], ['shop-bot', 'Shop Bot', true, 'local', '{"a":1}'], ['shop-bot-2', 'Shop Bot', true, 'local', '{}']]);
        assert.ok(!JSON.stringify(listed).includes('AAAA'), 'no token in a listing');
        await s.bots.update('alpha', { name: 'Alpha 2', token: tok('alpha-new-token-0000000000') });
        await s.bots.setEnabled('shop-bot', false);
        await s.bots.remove('shop-bot-2');
        const { specs, invalid } = await s.bots.load();
        assert.deepEqual(invalid, []);
        assert.deepEqual(specs.map((b) => [b.id, b.name, b.token, b.enabled]), [['alpha', 'Alpha 2', tok('alpha-new-token-0000000000'), true], ['shop-bot', 'Shop Bot', tok('shop-token-0000000000000000'), false]]);
        await assert.rejects(s.bots.remove('shop-bot-2'), (e: Error & { code?: string }) => e.code === 'BF_ERR_BOT_NOT_FOUND');
        await assert.rejects(s.bots.update('nobody', { name: 'x' }), (e: Error & { code?: string }) => e.code === 'BF_ERR_BOT_NOT_FOUND');
      } finally {
        await s.close();
      }
    });

    test('bots: tokens are stored encrypted: another key opens none of them, and every row is then invalid with its reason', async () => {
      const s = await engine.open();
      await s.bots.add({ id: 'a', name: 'A', token: tok('secret-token-a-000000000000') });
      await s.close();
      const other = await engine.reopen(crypto.randomBytes(32));
      try {
        assert.equal(await other.bots.keyOpensAToken(), false);
        const { specs, invalid } = await other.bots.load();
        assert.deepEqual(specs, []);
        assert.equal(invalid.length, 1);
        assert.equal(invalid[0]!.id, 'a');
        assert.ok(!invalid[0]!.reason.includes('secret-token'), 'the reason carries no token');
      } finally {
        await other.close();
      }
      const same = await engine.reopen();
      try {
        assert.equal(await same.bots.keyOpensAToken(), true);
      } finally {
        await same.close();
      }
    });

    test("bots: uid slots allocated once each, never reused; another writer's change is seen", async () => {
      const s = await engine.open();
      const cli = await engine.reopen();
      try {
        assert.deepEqual([...await s.bots.uidSlots(['a', 'b'])], [['a', 0], ['b', 1]]);
        assert.deepEqual([...await s.bots.uidSlots(['c', 'a', 'd', 'c'])].sort(), [['a', 0], ['c', 2], ['d', 3]], 'new ones in order, a kept, a repeat once');
        assert.deepEqual((await s.bots.allUidSlots()).sort(), [0, 1, 2, 3]);
        assert.equal(await s.bots.changedSinceLastCheck(), false);
        await cli.bots.add({ id: 'x', name: 'X', token: tok('x-token-00000000000000000000') });
        assert.equal(await s.bots.changedSinceLastCheck(), true, 'the CLI added a bot');
        assert.equal(await s.bots.changedSinceLastCheck(), false);
      } finally {
        await cli.close();
        await s.close();
      }
    });

    test('bots API: its list applied (added, changed, removed), an unchanged entry not written, a local id shadows it, the ETag kept', async () => {
      const s = await engine.open();
      const api = (id: string, name = id) => ({ id, name, token: tok(`${id}-api`), mode: null, handler: 'echo', settings: {}, enabled: true, apiRoot: null, invalid: null });
      try {
        await s.bots.add({ id: 'local', name: 'Local', token: tok('local-token-00000000000000') });
        assert.deepEqual(await s.bots.syncFromApi([api('p'), api('q'), api('local')], '"v1"'), { added: ['p', 'q'], changed: [], removed: [], shadowed: ['local'] });
        assert.equal(await s.bots.apiEtag(), '"v1"');
        assert.deepEqual(await s.bots.syncFromApi([api('p'), api('q', 'Q renamed')], '"v2"'), { added: [], changed: ['q'], removed: [], shadowed: [] });
        assert.deepEqual(await s.bots.syncFromApi([api('q', 'Q renamed')], null), { added: [], changed: [], removed: ['p'], shadowed: [] });
        assert.equal(await s.bots.apiEtag(), null);
        assert.deepEqual((await s.bots.list()).map((b) => [b.id, b.source, b.name]), [['local', 'local', 'Local'], ['q', 'api', 'Q renamed']]);
        await assert.rejects(s.bots.setEnabled('q', false), (e: Error & { code?: string }) => e.code === 'BF_ERR_BAD_INPUT' && /bots API/.test(e.message));
      } finally {
        await s.close();
      }
    });

    test('restart histories: kept, replaced, read back whole (window, quarantine, do-not-restart and its reason)', async () => {
      const s = await engine.open();
      try {
        assert.deepEqual(await s.history.loadAll(), new Map());
        await s.history.save('a', { restarts: [1000, 2000], consecutive: 2, quarantinedUntil: 9_000_000_000_000, doNotRestart: false, reason: null });
        await s.history.save('b', { restarts: [], consecutive: 0, quarantinedUntil: null, doNotRestart: true, reason: 'Telegram rejected the token (401 Unauthorized)' });
        await s.history.save('a', { restarts: [3000], consecutive: 1, quarantinedUntil: null, doNotRestart: false, reason: null });
        const all = await s.history.loadAll();
        assert.deepEqual(all.get('a'), { restarts: [3000], consecutive: 1, quarantinedUntil: null, doNotRestart: false, reason: null });
        assert.deepEqual(all.get('b'), { restarts: [], consecutive: 0, quarantinedUntil: null, doNotRestart: true, reason: 'Telegram rejected the token (401 Unauthorized)' });
        assert.equal(all.size, 2);
      } finally {
        await s.close();
      }
    });

    test('dead letters: one copy per update, oldest first, read for replay whole, replays counted, removed by id or bot', async () => {
      const s = await engine.open();
      try {
        await s.deadLetters.add('a', update(1, 'first'), 'died twice alone', 100);
        await s.deadLetters.add('a', update(1, 'again'), 'died twice alone', 200);
        await s.deadLetters.add('b', update(5), 'handler failed', 300);
        await s.deadLetters.add('a', update(2), 'handler failed', 400);
        const all = await s.deadLetters.list();
        assert.deepEqual(all.map((d) => [d.botId, d.updateId, d.kind, d.reason, d.at, d.replays]), [['a', 1, 'message', 'died twice alone', 100, 0], ['b', 5, 'message', 'handler failed', 300, 0], ['a', 2, 'message', 'handler failed', 400, 0]]);
        assert.deepEqual((await s.deadLetters.list('a')).map((d) => d.updateId), [1, 2]);
        const [one] = await s.deadLetters.forReplay({ id: all[0]!.id });
        assert.equal((one!.update as { message?: { text?: string } }).message?.text, 'first', 'the first copy kept');
        assert.deepEqual((await s.deadLetters.forReplay({ botId: 'a' })).map((d) => d.updateId), [1, 2]);
        assert.deepEqual(await s.deadLetters.forReplay({ id: 999_999 }), []);
        await s.deadLetters.replayFailed(all[0]!.id, 'timeout');
        const again = (await s.deadLetters.list('a'))[0]!;
        assert.deepEqual([again.replays, again.lastResult], [1, 'timeout']);
        assert.deepEqual(await s.deadLetters.countsByBot(), new Map([['a', 2], ['b', 1]]));
        assert.equal(await s.deadLetters.remove({ id: all[1]!.id }), 1);
        assert.equal(await s.deadLetters.remove({ botId: 'a' }), 2);
        assert.deepEqual(await s.deadLetters.list(), []);
      } finally {
        await s.close();
      }
    });

    test(`dead letters: at most ${MAX_DEAD_LETTERS_PER_BOT} a bot, the oldest dropped, the neighbours untouched`, async () => {
      const s = await engine.open();
      try {
        await s.deadLetters.add('other', update(1), 'x', 1);
        for (let i = 1; i <= MAX_DEAD_LETTERS_PER_BOT + 5; i++) await s.deadLetters.add('flood', update(i), 'x', i);
        const kept = await s.deadLetters.list('flood');
        assert.equal(kept.length, MAX_DEAD_LETTERS_PER_BOT);
        assert.equal(kept[0]!.updateId, 6, 'the five oldest dropped');
        assert.equal((await s.deadLetters.list('other')).length, 1);
      } finally {
        await s.close();
      }
    });

    test('meta: absent is null, set, replaced', async () => {
      const s = await engine.open();
      try {
        assert.equal(await s.meta.get('bots_api_etag'), null);
        await s.meta.set('bots_api_etag', '"v1"');
        await s.meta.set('bots_api_etag', '"v2"');
        assert.equal(await s.meta.get('bots_api_etag'), '"v2"');
      } finally {
        await s.close();
      }
    });
  });
}

describe('the store on PostgreSQL: migrations, failures and outages', { skip: noPostgres }, () => {
  test('two masters opening a fresh database at once migrate it once, under the advisory lock', async () => {
    pg!.psql('CREATE DATABASE racing');
    const url = pg!.url.replace(/\/postgres$/, '/racing');
    const [a, b] = await Promise.all([openPgStore({ url, key: TEST_KEY }), openPgStore({ url, key: TEST_KEY })]);
    await Promise.all([a.close(), b.close()]);
    assert.equal(pg!.psql("SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_migrations", 'racing'), Array.from({ length: PG_SCHEMA_VERSION }, (_, i) => i + 1).join(','), 'each version once');
    assert.equal(pg!.psql("SELECT count(*) FROM information_schema.tables WHERE table_name = 'journal_pending'", 'racing'), '1');
  });

  test('a database migrated by a newer botfleet is refused with BF_ERR_STORE, nothing changed', async () => {
    pg!.psql('CREATE DATABASE newer');
    const url = pg!.url.replace(/\/postgres$/, '/newer');
    await (await openPgStore({ url, key: TEST_KEY })).close();
    const s = await openPgStore({ url, key: TEST_KEY });
    await s.pool.query("INSERT INTO schema_migrations (version, name) VALUES (999, 'from the future')");
    await s.close();
    await assert.rejects(openPgStore({ url, key: TEST_KEY }), (err: Error & { code?: string }) => err.code === 'BF_ERR_STORE' && /version 999, newer than this botfleet/.test(err.message));
  });

  test('an unreachable server fails in bounded time with BF_ERR_STORE naming the server, never the password', async () => {
    const url = pg!.url.replace(`:${pg!.port}/`, ':1/');
    const t0 = Date.now();
    await assert.rejects(openPgStore({ url, key: TEST_KEY, connectTimeoutMs: 1000 }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'BF_ERR_STORE');
      assert.match(err.message, /^migrating the schema failed on botfleet@127\.0\.0\.1:1\/postgres: /);
      assert.ok(!err.message.includes(pg!.password), 'no password in the message');
      assert.ok(!(err.stack ?? '').includes(pg!.password), 'no password in the stack');
      return true;
    });
    assert.ok(Date.now() - t0 < 5000, 'bounded by the connect timeout');
    assert.equal(redactUrl(pg!.url), pg!.url.replace(encodeURIComponent(pg!.password), '***'));
    assert.ok(!redactUrl(pg!.url).includes(pg!.password));
  });

  test('the server stopped and started again, a transaction in flight: calls fail with BF_ERR_STORE meanwhile, nothing crashes, and the same store works after', async () => {
    pg!.psql('CREATE DATABASE outage');
    const s = await openPgStore({ url: pg!.url.replace(/\/postgres$/, '/outage'), key: TEST_KEY, connectTimeoutMs: 1000 });
    try {
      await s.meta.set('k', 'before');
      // A transaction in flight when the server goes: its client emits `error` (unheard, it would end the process).
      const inFlight = inTransaction(s.pool, (c) => c.query('SELECT pg_sleep(30)')).then(() => null, (err: Error) => err);
      await new Promise((r) => setTimeout(r, 200)); // the statement reaches the server (it sleeps 30 s: no race on a test this short)
      await pg!.pause();
      assert.match(String((await inFlight)?.message), /terminat/i, 'the transaction in flight rejects');
      await assert.rejects(s.meta.get('k'), (err: Error & { code?: string }) => err.code === 'BF_ERR_STORE' && !err.message.includes(pg!.password));
      await pg!.resume();
      assert.equal(await s.meta.get('k'), 'before', 'resumed without reopening the store');
    } finally {
      await s.close();
    }
  });

  test('a journal commit NOTIFYs its bots to a LISTEN connection, which comes back by itself after an outage', async () => {
    pg!.psql('CREATE DATABASE listening');
    const url = pg!.url.replace(/\/postgres$/, '/listening');
    const s = await openPgStore({ url, key: TEST_KEY, connectTimeoutMs: 1000 });
    const journal = pgJournalEngine(s.pool, url);
    const heard: string[] = [];
    const events = new EventEmitter();
    const lost: string[] = [];
    const l = listenPg({
      url, channels: [JOURNAL_CHANNEL], minRetryMs: 50, maxRetryMs: 200, connectTimeoutMs: 1000,
      onNotify: (_ch, payload) => (heard.push(payload), events.emit('notify')),
      onConnected: () => events.emit('connected'),
      onLost: (why) => lost.push(why),
    });
    const next = (what: string) => new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${what} did not happen within 10 s`)), 10_000);
      events.once(what, () => (clearTimeout(t), resolve()));
    });
    try {
      await next('connected');
      const notified = next('notify');
      await journal.commit({ insert: [['bot-a', 1, '{"update_id":1}', Date.now(), 0], ['bot-a', 2, '{"update_id":2}', Date.now(), 0]], ack: [], deaths: [] });
      await notified;
      assert.deepEqual(heard, ['bot-a'], 'one notification per bot and commit');
      await pg!.pause();
      const back = next('connected');
      await pg!.resume();
      await back;
      assert.ok(lost.length >= 1 && lost.every((w) => !w.includes(pg!.password)), 'the loss was told, without the password');
      const again = next('notify');
      await journal.commit({ insert: [['bot-b', 1, '{"update_id":1}', Date.now(), 0]], ack: [], deaths: [] });
      await again;
      assert.deepEqual(heard, ['bot-a', 'bot-b']);
      assert.equal(l.connected(), true);
    } finally {
      await l.close();
      await s.close();
    }
  });

  test('fencing: a write about a bot carrying a stale bot epoch (restart history, dead letter, journal ack) is refused; the owner\'s goes through', async () => {
    pg!.psql('CREATE DATABASE fencing');
    const url = pg!.url.replace(/\/postgres$/, '/fencing');
    const s = await openPgStore({ url, key: TEST_KEY });
    try {
      const c = s.cluster!;
      const a = (await c.join('a', 'h', 1, 60_000))!;
      const b = (await c.join('b', 'h', 2, 60_000))!;
      const first = (await c.take('bot', null, 'a', a, 'unowned'))!;
      const row = (await c.owners()).find((r) => r.bot === 'bot')!;
      const second = (await c.take('bot', { member: row.member, memberEpoch: row.memberEpoch, botEpoch: row.botEpoch }, 'b', b, 'owner-dead'))!;
      assert.equal(second, first + 1, 'a take raises the bot epoch');
      const h = { restarts: [1], consecutive: 1, quarantinedUntil: null, doNotRestart: false, reason: null };
      assert.equal(await s.history.save('bot', h, first), false, 'the old owner\'s history refused');
      assert.equal(await s.history.load('bot'), null, 'nothing written');
      assert.equal(await s.history.save('bot', { ...h, consecutive: 2 }, second), true);
      assert.equal((await s.history.load('bot'))?.consecutive, 2, "the owner's written");
      assert.equal(await s.deadLetters.add('bot', update(1), 'poison', 1, first), false, 'the old owner\'s dead letter refused');
      assert.equal(await s.deadLetters.add('bot', update(2), 'poison', 2, second), true);
      assert.deepEqual((await s.deadLetters.list('bot')).map((d) => d.updateId), [2]);
      const journal = pgJournalEngine(s.pool, url);
      await journal.commit({ insert: [['bot', 10, '{"update_id":10}', 1, 0], ['bot', 11, '{"update_id":11}', 1, 0]], ack: [], deaths: [] });
      await journal.commit({ insert: [], ack: [['bot', 10, 5, first], ['bot', 11, 5, second]], deaths: [] });
      assert.equal(pg!.psql("SELECT string_agg(update_id::text, ',') FROM journal_pending WHERE bot = 'bot'", 'fencing'), '10', 'the stale ack left its update pending for the owner');
      assert.equal(pg!.psql("SELECT string_agg(update_id::text, ',') FROM journal_acked WHERE bot = 'bot'", 'fencing'), '11');
      await journal.commit({ insert: [['bot', 11, '{"update_id":11}', 1, 0]], ack: [], deaths: [] });
      assert.equal(pg!.psql("SELECT count(*) FROM journal_pending WHERE bot = 'bot' AND update_id = 11", 'fencing'), '0', 'an acked update is not journaled again (from any master)');
    } finally {
      await s.close();
    }
  });
});

/**
 * The fleet on PostgreSQL, end to end: a real master on `DATABASE_URL` (a real server the
 * test starts from the machine's binaries, scripts/postgres.ts), real workers, the emulator
 * delivering webhooks, real SIGKILLs, the server really stopped; the tables read back with
 * `psql`.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { Update } from 'node-telegram-bot-api';
import { homePaths } from '../config/load.js';
import { openHomeRegistry } from '../master/store/registry.js';
import { FIXTURES, withFleet, type Fleet } from './helpers/fleet.js';
import { waitFor } from './helpers/wait.js';
import { repliesByChat, streamThroughKills } from './helpers/streams.js';
import { postgresBinDir, POSTGRES_MISSING, startLocalPostgres, type LocalPostgres } from '../scripts/postgres.js';

const MISBEHAVE = path.join(FIXTURES, 'misbehave.js');
const noPostgres = postgresBinDir() === null ? POSTGRES_MISSING : false;

describe('the fleet on PostgreSQL', { skip: noPostgres }, () => {
  let pg: LocalPostgres;
  let made = 0;
  before(async () => (pg = await startLocalPostgres()));
  after(async () => pg?.stop());
  /** A fresh database of this server: its URL and a `psql` on it. */
  const database = () => {
    const db = `fleet_${process.pid}_${made++}`;
    pg.psql(`CREATE DATABASE ${db}`);
    return { url: pg.url.replace(/\/postgres$/, `/${db}`), sql: (q: string) => pg.psql(q, db) };
  };
  const health = async (fleet: Fleet) => {
    const r = await fleet.statusHttp('/health');
    return { status: r.status, ...(JSON.parse(r.body) as { ok: boolean; reason?: string }) };
  };

  test('a webhook bot, 1000 updates over 20 chats, two worker SIGKILLs and one master SIGKILL: every answer 200, each update handled in order per chat, none dead-lettered, no row left', { timeout: 180_000 }, async (t) => {
    const { url, sql } = database();
    await withFleet({ DATABASE_URL: url, RESTART_BACKOFF_MS: '50' }, { webhook: true }, async (fleet) => {
      await fleet.addBot('hook', { mode: 'webhook', handler: MISBEHAVE, settings: { delayMs: 5 } });
      assert.equal(sql("SELECT count(*) FROM bots WHERE id = 'hook'"), '1', 'the CLI wrote the bot into PostgreSQL');
      await fleet.startMaster();
      await fleet.waitRunning(['hook']);
      const tg = fleet.tg('hook');
      const duplicates = await streamThroughKills(fleet, 'hook', 20, 50, [250, 500, { master: 750 }]);
      t.diagnostic(`${duplicates} of 1000 handled twice; answers ${JSON.stringify(tg.webhookAnswers)}`);
      // While the master was dead its port refused connections (no answer, Telegram retries); every answer given was a 200.
      assert.deepEqual(Object.keys(tg.webhookAnswers).filter((k) => k !== 'error'), ['200'], `only 200s answered: ${JSON.stringify(tg.webhookAnswers)}`);
      await waitFor(() => sql('SELECT count(*) FROM journal_pending') === '0', 10_000, 'no pending row left in journal_pending');
      assert.equal(sql('SELECT count(*) FROM dead_letters'), '0', 'none dead-lettered');
      assert.ok(Number(sql("SELECT count(DISTINCT update_id) FROM journal_acked WHERE bot = 'hook'")) >= 900, 'the acked ids kept for dedup');
      assert.equal(sql("SELECT count(*) FROM restart_history WHERE bot_id = 'hook'"), '1', 'the restart history kept in PostgreSQL');
    });
  });

  test('PostgreSQL stopped for 20 s under load (a lease longer than that): intake answers 503, /health says why, the master and the worker live on; after it returns every update is handled', { timeout: 180_000 }, async (t) => {
    const { url, sql } = database();
    // A lease that outlasts the outage: with the defaults (renew deadline 10 s) the master would fence its bots (docs/cluster.md).
    await withFleet({ DATABASE_URL: url, CLUSTER_LEASE_MS: '60000', CLUSTER_RENEW_DEADLINE_MS: '45000' }, { webhook: true }, async (fleet) => {
      await fleet.addBot('hook', { mode: 'webhook', handler: MISBEHAVE, settings: { delayMs: 2 } });
      await fleet.startMaster();
      const before = (await fleet.waitRunning(['hook'])).workers[0]!;
      const tg = fleet.tg('hook');
      const chats = [1, 2, 3, 4, 5];
      let sent = 0;
      const expected = new Map(chats.map((c) => [c, [] as string[]]));
      const load = setInterval(() => {
        const c = chats[sent % chats.length]!;
        fleet.emulator.userSends(tg, c, `u${sent}`);
        expected.get(c)!.push(`ok: u${sent++}`);
      }, 20);
      try {
        await waitFor(() => tg.sent.length >= 100, 20_000, '100 replies before the outage');
        const stoppedAt = Date.now();
        await pg.pause();
        const down = await waitFor(async () => {
          const h = await health(fleet);
          return h.status === 503 ? h : null;
        }, 15_000, '/health 503 while the database is down');
        assert.match(down.reason ?? '', /journal cannot write|store/, `the reason names the store: ${down.reason}`);
        assert.doesNotMatch(down.reason ?? '', new RegExp(pg.password), 'no password in /health');
        await waitFor(() => (tg.webhookAnswers['503'] ?? 0) > 0, 15_000, 'intake answering 503');
        // The outage lasts 20 s by design (the scenario), not a wait for something to happen.
        await new Promise((r) => setTimeout(r, Math.max(0, 20_000 - (Date.now() - stoppedAt))));
        assert.equal(fleet.master!.exitCode, null, 'the master lives');
        await pg.resume();
      } finally {
        clearInterval(load);
        await pg.resume();
      }
      await waitFor(() => [...repliesByChat(tg.sent, chats).values()].every((r, i) => r.collapsed.length >= expected.get(chats[i]!)!.length), 60_000, `a reply to each of the ${sent} updates`);
      // Every update handled. Not always in order: one refused with 503 comes back when Telegram retries it, after later
      // ones of its chat that were accepted meanwhile (Telegram's own redelivery order; docs/operations.md).
      const byChat = repliesByChat(tg.sent, chats);
      for (const c of chats) assert.deepEqual([...byChat.get(c)!.collapsed].sort(), [...expected.get(c)!].sort(), `chat ${c}: every update`);
      t.diagnostic(`${sent} updates, answers ${JSON.stringify(tg.webhookAnswers)}`);
      await waitFor(async () => (await health(fleet)).status === 200, 15_000, '/health 200 again');
      const w = (await fleet.worker('hook'))!;
      assert.equal(w.pid, before.pid, 'the same worker: none was restarted for the outage');
      assert.equal(w.restarts, before.restarts);
      await waitFor(() => sql('SELECT count(*) FROM journal_pending') === '0', 15_000, 'the acks kept through the outage written: no pending row left');
    });
  });

  test('a master started while its database is down waits, saying why on /health, and starts the fleet when it comes up; a bot added by the CLI starts at once (NOTIFY, not the 10-minute poll)', { timeout: 120_000 }, async () => {
    const { url } = database();
    await withFleet({ DATABASE_URL: url, REGISTRY_POLL_MS: '600000' }, {}, async (fleet) => {
      await fleet.addBot('echo1');
      await pg.pause();
      try {
        const starting = fleet.startMaster();
        const h = await waitFor(async () => {
          const r = await health(fleet);
          return r.status === 503 ? r : null;
        }, 15_000, 'the waiting master answering /health');
        assert.match(h.reason ?? '', /waiting for the store: .*127\.0\.0\.1/);
        assert.doesNotMatch(h.reason ?? '', new RegExp(pg.password));
        await pg.resume();
        await starting;
      } finally {
        await pg.resume();
      }
      await fleet.waitRunning(['echo1'], 30_000);
      assert.equal(await fleet.chat('echo1', 5, 'hi'), 'hi');
      assert.match(fleet.masterOutput.join(''), /waiting for the store/);
      await fleet.addBot('echo2');
      await fleet.waitRunning(['echo2'], 15_000);
    });
  });

  test('store copy: a home with bots, a quarantine, a dead letter and pending updates moves into PostgreSQL (again: nothing changes; a database of another fleet: refused); a master on DATABASE_URL runs the same bots with the same tokens, and no token or password shows anywhere', { timeout: 180_000 }, async () => {
    const { url, sql } = database();
    const other = database();
    await withFleet({}, { webhook: true }, async (fleet) => {
      const hook = await fleet.addBot('hook', { mode: 'webhook', handler: MISBEHAVE });
      await fleet.addBot('echo1');
      await fleet.addBot('stuck');
      await fleet.startMaster();
      const s = await fleet.waitRunning(['hook', 'echo1', 'stuck']);
      assert.equal(await fleet.chat('echo1', 3, 'before'), 'before');
      const listed = (await fleet.cli(['bots', 'list', '--json'])).stdout;
      // Three updates journaled and not handled (the worker frozen), then the master and its workers killed.
      const worker = s.workers.find((w) => w.botId === 'hook')!.pid!;
      process.kill(worker, 'SIGSTOP');
      for (let i = 0; i < 3; i++) fleet.emulator.userSends(hook, 40, `kept${i}`);
      await waitFor(() => hook.webhookAnswers['200'] === 3, 10_000, 'three updates answered 200');
      fleet.master!.kill('SIGKILL');
      await waitFor(() => fleet.master!.signalCode !== null, 5000, 'the master dying');
      process.kill(worker, 'SIGKILL');
      // A dead letter and a quarantine an operator must release, kept by the home.
      const r = openHomeRegistry(homePaths(fleet.home), undefined);
      r.deadLetters.add('echo1', { update_id: 77, message: { message_id: 1, date: 0, chat: { id: 3, type: 'private' }, text: 'poison' } } as Update, 'test: poison', Date.now());
      r.saveHistory('stuck', { restarts: [Date.now() - 1000], consecutive: 1, quarantinedUntil: null, doNotRestart: true, reason: 'handler cannot load (test)' });
      r.close();

      const bare = url.replace(/:[^:@/]*@/, '@'); // the password from PGPASSWORD, not the command line
      fleet.env.PGPASSWORD = pg.password;
      const first = await fleet.cli(['store', 'copy', '--to', bare]);
      assert.equal(first.code, 0, first.stderr);
      assert.match(first.stdout, /3 bot\(s\), 3 uid slot\(s\), \d+ restart histories, 1 dead letter\(s\), 3 pending update\(s\)/);
      const counts = () => sql("SELECT (SELECT count(*) FROM bots) || ' ' || (SELECT count(*) FROM dead_letters) || ' ' || (SELECT count(*) FROM journal_pending) || ' ' || (SELECT count(*) FROM restart_history WHERE do_not_restart)");
      assert.equal(counts(), '3 1 3 1');
      for (const id of ['hook', 'echo1', 'stuck']) assert.equal(sql(`SELECT count(*) FROM bots WHERE strpos(token_enc, '${fleet.tg(id).token}') > 0`), '0', 'tokens stay sealed');
      const again = await fleet.cli(['store', 'copy', '--to', bare]);
      assert.equal(again.code, 0, again.stderr);
      assert.equal(counts(), '3 1 3 1', 'a second copy changes nothing');
      fleet.env.DATABASE_URL = other.url; // the CLI on the other database migrates it
      assert.equal((await fleet.cli(['bots', 'list'])).code, 0);
      delete fleet.env.DATABASE_URL;
      other.sql("INSERT INTO meta VALUES ('fleet_id', 'another-fleet')");
      const refused = await fleet.cli(['store', 'copy', '--to', other.url]);
      assert.notEqual(refused.code, 0);
      assert.match(refused.stderr, /holds another fleet .*nothing copied/);
      assert.equal(other.sql('SELECT count(*) FROM bots'), '0');

      fleet.env.DATABASE_URL = url;
      delete fleet.env.PGPASSWORD;
      await fleet.startMaster();
      await fleet.waitRunning(['hook', 'echo1']);
      await waitFor(() => hook.sent.filter((m) => /^ok: kept/.test(m.text)).length === 3, 20_000, 'the three pending updates handled from PostgreSQL');
      assert.equal(await fleet.chat('echo1', 3, 'after'), 'after', 'the same token works');
      assert.equal((await fleet.cli(['bots', 'list', '--json'])).stdout, listed, 'the same bots, tokens (masked) and settings');
      const stuck = (await fleet.worker('stuck'))!;
      assert.equal(stuck.state, 'quarantined', 'the quarantine moved with the history');
      assert.match((await fleet.cli(['dlq', 'list', 'echo1'])).stdout, /test: poison/);
      await waitFor(() => sql('SELECT count(*) FROM journal_pending') === '0', 10_000, 'the journal emptied');

      // No token or database password in any log, status, metric, error or command line.
      const secrets = [pg.password, ...['hook', 'echo1', 'stuck'].map((id) => fleet.tg(id).token)];
      fleet.env.DATABASE_URL = url.replace(/:[^:@/]*@/, ':not-the-password@');
      const failed = await fleet.cli(['bots', 'list']);
      fleet.env.DATABASE_URL = url;
      assert.notEqual(failed.code, 0);
      assert.match(failed.stderr, /BF_ERR_STORE|password authentication failed/);
      const seen = [
        ...fs.readdirSync(path.join(fleet.home, 'logs')).map((f) => fs.readFileSync(path.join(fleet.home, 'logs', f), 'utf8')),
        (await fleet.statusHttp('/api/workers/status')).body, (await fleet.statusHttp('/metrics')).body, (await fleet.statusHttp('/health')).body,
        (await fleet.cli(['status', '--json'])).stdout, (await fleet.cli(['describe', 'echo1'])).stdout, failed.stderr, fleet.masterOutput.join(''),
        fs.readFileSync(`/proc/${fleet.master!.pid}/cmdline`, 'utf8'),
      ].join('\n');
      for (const secret of secrets) assert.ok(!seen.includes(secret), 'a secret showed up');
    });
  });
});

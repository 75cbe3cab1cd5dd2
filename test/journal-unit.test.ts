/**
 * The journal on its own, once per storage engine: a real SQLite file with its real
 * writer thread, and a real PostgreSQL (started by the test: scripts/postgres.ts). The
 * per-bot bound, dedup at insert and after the ack, order and the in-flight window,
 * redelivery to the next worker, poison to the dead-letter queue, and everything not
 * acked coming back when the journal is opened again (a restart).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import type { Update } from 'node-telegram-bot-api';
import { openJournal, startJournal } from '../master/delivery/open-journal.js';
import { pgJournalEngine } from '../master/store/pg/pg-journal.js';
import { openSqliteJournal } from '../master/store/journal-sqlite.js';
import { openPgStore } from '../master/store/pg/pg-store.js';
import { postgresBinDir, POSTGRES_MISSING, startLocalPostgres, type LocalPostgres } from '../scripts/postgres.js';
import type { Journal } from '../master/delivery/journal.js';
import type { MasterMessage } from '../worker/protocol.js';

const quiet = pino({ level: 'silent' });
const upd = (id: number, chat = 1): Update => ({ update_id: id, message: { message_id: id, date: 0, chat: { id: chat, type: 'private' }, text: `t${id}` } } as unknown as Update);

/** A worker stand-in: records what the journal sends it. */
function sink() {
  const got: Array<{ ids: number[]; replay: boolean }> = [];
  return {
    got,
    ids: () => got.flatMap((g) => g.ids),
    send(m: MasterMessage) {
      if (m.type === 'update') got.push({ ids: m.updates.map((u) => u.update_id), replay: m.replay === true });
    },
  };
}
const tick = () => new Promise((r) => setImmediate(r));

type Engine = 'sqlite' | 'postgres';
let server: LocalPostgres | null = null;
let databases = 0;
/** The token key of the tests' stores (random per run). */
const TEST_KEY = crypto.randomBytes(32);
const noPostgres = postgresBinDir() === null ? POSTGRES_MISSING : false;
before(async () => {
  if (!noPostgres) server = await startLocalPostgres();
});
after(async () => {
  await server?.stop();
});

/** `fn` with a way to open (and, again, reopen) one journal on `engine`, and the dead letters it gave up. */
async function withJournal(engine: Engine, opts: { maxPending?: number; window?: number }, fn: (open: () => Promise<Journal>, dead: Array<[string, number, string]>) => Promise<void>) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'botfleet-journal-'));
  const dead: Array<[string, number, string]> = [];
  const o = {
    maxPending: opts.maxPending ?? 100, window: opts.window ?? 64, dedupWindowMs: 60_000, logger: quiet,
    onDeadLetter: (bot: string, id: number, _u: Update, reason: string) => dead.push([bot, id, reason]),
  };
  const db = `journal_${process.pid}_${databases++}`;
  if (engine === 'postgres') server!.psql(`CREATE DATABASE ${db}`);
  const pools: Array<{ close(): Promise<void> }> = [];
  const open = async (): Promise<Journal> => {
    const file = path.join(dir, 'journal.db');
    if (engine === 'sqlite') return openJournal({ store: { journalEngine: (sync) => openSqliteJournal(file, sync), where: file }, sync: 'full', ...o });
    const url = server!.url.replace(/\/postgres$/, `/${db}`);
    const store = await openPgStore({ url, key: TEST_KEY });
    pools.push(store);
    const e = pgJournalEngine(store.pool, url);
    return startJournal(e, await e.load(Date.now() - o.dedupWindowMs), o);
  };
  try {
    await fn(open, dead);
  } finally {
    for (const p of pools) await p.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

for (const engine of ['sqlite', 'postgres'] as const) describe(`journal on ${engine === 'sqlite' ? 'a real SQLite file and its writer thread' : 'a real PostgreSQL'}`, { skip: engine === 'postgres' && noPostgres }, () => {
  test('JOURNAL_MAX_PENDING: beyond the bound intake is "full" (a 503) and nothing is lost; an ack makes room', async () => {
    await withJournal(engine, { maxPending: 3 }, async (open) => {
      const j = await open();
      assert.deepEqual(await Promise.all([1, 2, 3, 4].map((id) => j.accept('a', upd(id)))), ['journaled', 'journaled', 'journaled', 'full']);
      assert.equal(await j.accept('b', upd(4)), 'journaled', 'the bound is per bot');
      const w = sink();
      j.attach('a', w);
      await tick();
      assert.deepEqual(w.ids(), [1, 2, 3]);
      j.acked('a', [{ updateId: 1, ok: true }]);
      assert.equal(await j.accept('a', upd(4)), 'journaled', 'Telegram retries after the 503 and it fits now');
      assert.equal(j.stats('a').refused, 1);
      await j.close();
    });
  });

  test('dedup: a copy of a pending update waits for its commit, an acked one is "duplicate", across a reopen too', async () => {
    await withJournal(engine, {}, async (open) => {
      const j = await open();
      const [first, second] = await Promise.all([j.accept('a', upd(10)), j.accept('a', upd(10))]);
      assert.deepEqual([first, second], ['journaled', 'duplicate']);
      const w = sink();
      j.attach('a', w);
      await tick();
      assert.deepEqual(w.ids(), [10], 'sent once');
      j.acked('a', [{ updateId: 10, ok: true }]);
      assert.equal(await j.accept('a', upd(10)), 'duplicate', 'a redelivery after the ack');
      await j.close();
      const j2 = await open();
      assert.equal(await j2.accept('a', upd(10)), 'duplicate', 'remembered by the file across a restart');
      assert.deepEqual(j2.ackedIds('a'), [10], 'handed to a new polling worker as ackedUpdateIds');
      await j2.close();
    });
  });

  test('delivery: in order, at most the window in flight, only while attached; the next worker gets what the dead one had', async () => {
    await withJournal(engine, { window: 2 }, async (open) => {
      const j = await open();
      for (const id of [1, 2, 3, 4, 5]) assert.equal(await j.accept('a', upd(id)), 'journaled');
      const w1 = sink();
      j.attach('a', w1);
      await tick();
      assert.deepEqual(w1.ids(), [1, 2], 'the window');
      j.acked('a', [{ updateId: 1, ok: true }]);
      await tick();
      assert.deepEqual(w1.ids(), [1, 2, 3]);
      j.pause('a');
      j.acked('a', [{ updateId: 2, ok: true }]);
      await tick();
      assert.deepEqual(w1.ids(), [1, 2, 3], 'nothing new while draining');
      j.workerGone('a', false);
      const w2 = sink();
      j.attach('a', w2);
      await tick();
      assert.deepEqual(w2.ids(), [3, 4], 'what the dead worker held first, in order');
      assert.equal(j.stats('a').pending, 3);
      await j.close();
    });
  });

  test('a restart (the file reopened) delivers every update not acked, in order, and not the acked ones', async () => {
    await withJournal(engine, {}, async (open) => {
      const j = await open();
      for (const id of [7, 8, 9]) await j.accept('a', upd(id));
      const w = sink();
      j.attach('a', w);
      await tick();
      j.acked('a', [{ updateId: 8, ok: true }]);
      await j.close(); // what a SIGKILL leaves is the same: every write above was committed before its promise resolved
      const j2 = await open();
      const w2 = sink();
      j2.attach('a', w2);
      await tick();
      assert.deepEqual(w2.ids(), [7, 9]);
      await j2.close();
    });
  });

  test('probation: after an unexplained death the suspects go one at a time; only the update alone at two deaths is dead-lettered; a replay puts it back', async () => {
    await withJournal(engine, { window: 8 }, async (open, dead) => {
      const j = await open();
      for (const id of [20, 21, 22]) await j.accept('a', upd(id));
      const first = sink();
      j.attach('a', first);
      await tick();
      assert.deepEqual(first.ids(), [20, 21, 22], 'a full window');
      j.workerGone('a', true); // a crash with three in flight: all three suspects, none blamed
      assert.deepEqual(dead, []);
      for (let death = 0; death < 2; death++) {
        const w = sink();
        j.attach('a', w);
        await tick();
        assert.deepEqual(w.ids(), [20], 'probation: one at a time, the oldest suspect first');
        j.workerGone('a', true); // 20 alone in flight: it is the culprit
      }
      assert.deepEqual(dead, [['a', 20, 'its worker died twice while it was the only update in flight']]);
      const next = sink();
      j.attach('a', next);
      await tick();
      assert.deepEqual(next.ids(), [21], 'the next suspect, alone');
      j.acked('a', [{ updateId: 21, ok: true }]);
      await tick();
      assert.deepEqual(next.ids(), [21, 22]);
      j.acked('a', [{ updateId: 22, ok: true }]);
      for (const id of [23, 24]) await j.accept('a', upd(id));
      await tick();
      assert.deepEqual(next.ids(), [21, 22, 23, 24], 'probation over: the window again');
      assert.equal(await j.accept('a', upd(20)), 'duplicate', 'Telegram\'s redelivery is not handled again');
      assert.equal(await j.accept('a', upd(20), true), 'journaled', 'dlq replay bypasses dedup');
      await j.close();
    });
  });

  test('a death the master explains (memory, hung, a deploy) makes no suspect: the window stays full, nothing is dead-lettered', async () => {
    await withJournal(engine, { window: 8 }, async (open, dead) => {
      const j = await open();
      for (const id of [40, 41, 42]) await j.accept('b', upd(id));
      for (let death = 0; death < 3; death++) {
        const w = sink();
        j.attach('b', w);
        await tick();
        assert.deepEqual(w.ids(), [40, 41, 42]);
        j.workerGone('b', false);
      }
      assert.deepEqual(dead, []);
      await j.close();
    });
  });

  test('dlq take: a stopped bot\'s pending updates move to the dead-letter queue, remembered as handled', async () => {
    await withJournal(engine, {}, async (open, dead) => {
      const j = await open();
      for (const id of [30, 31]) await j.accept('gone', upd(id));
      assert.equal(j.take('gone'), 2);
      assert.deepEqual(dead.map(([bot, id]) => [bot, id]), [['gone', 30], ['gone', 31]]);
      assert.equal(j.stats('gone').pending, 0);
      assert.equal(await j.accept('gone', upd(30)), 'duplicate', 'not journaled again on Telegram\'s redelivery');
      assert.equal(j.take('nobody'), 0);
      await j.close();
      const j2 = await open();
      const w = sink();
      j2.attach('gone', w);
      await tick();
      assert.deepEqual(w.ids(), [], 'gone from the file too');
      await j2.close();
    });
  });
});

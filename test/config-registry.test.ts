/** Configuration validation, token encryption, and the SQLite registry on a real database file. */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { effectiveCapacity, loadConfig } from '../config/load.js';
import { decryptToken, encryptToken, loadEncryptionKey, maskToken, webhookSecretToken } from '../config/secrets.js';
import { openRegistry } from '../master/store/registry.js';
import { MAX_DEAD_LETTERS_PER_BOT } from '../master/store/dead-letters.js';
import { parseMasterMessage, parseWorkerMessage } from '../worker/protocol.js';

const fakeToken = () => `${crypto.randomInt(100000, 999999999)}:${crypto.randomBytes(27).toString('base64url').slice(0, 35)}`;
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'botfleet-unit-'));

test('defaults match DESIGN.md', () => {
  const c = loadConfig({}, {}, '/srv/bots');
  assert.equal(c.mode, 'polling');
  assert.equal(c.maxTotalWorkers, 1000);
  assert.equal(c.maxWorkersPerCore, 0, 'no per-core cap: the memory reserve decides (the scale issue; DESIGN.md said 20)');
  assert.equal(c.memoryReserveMb, 1024);
  assert.equal(c.maxMemoryPerWorkerMb, 150);
  assert.equal(c.workerTimeoutMs, 90_000);
  assert.equal(c.heartbeatIntervalMs, 15_000);
  assert.equal(c.heartbeatTimeoutMs, 60_000);
  assert.equal(c.startupTimeoutMs, 30_000);
  assert.equal(c.maxRestartsPerHour, 5);
  assert.equal(c.restartBackoffMs, 1000);
  assert.equal(c.restartCooldownMs, 45_000);
  assert.equal(c.dedupWindowMs, 30_000);
  assert.equal(c.workerSchedPolicy, 'batch');
  assert.equal(c.statusHost, '127.0.0.1');
  assert.equal(c.statusPort, 3001);
  assert.equal(c.webhookPort, 8443);
  assert.equal(c.telegramApiRoot, 'https://api.telegram.org');
  assert.equal(c.home, '/srv/bots');
  assert.equal(effectiveCapacity(c, 2), 1000, 'no per-core cap by default');
  assert.equal(effectiveCapacity({ ...c, maxWorkersPerCore: 20 }, 2), 40, 'honoured when set');
});

test('flags win over env; every bad value is one line naming its source', () => {
  assert.equal(loadConfig({ maxTotalWorkers: '7' }, { MAX_TOTAL_WORKERS: '9' }).maxTotalWorkers, 7);
  assert.throws(() => loadConfig({}, { MAX_MEMORY_PER_WORKER_MB: 'abc', BOT_MODE: 'fax', WEBHOOK_HOST: 'nope', AUTO_SWITCH_MODE: 'maybe' }), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'BF_ERR_CONFIG');
    const lines = err.message.split('\n');
    assert.equal(lines.length, 4);
    assert.match(lines.join('\n'), /MAX_MEMORY_PER_WORKER_MB must be a whole number, got "abc"/);
    assert.match(lines.join('\n'), /BOT_MODE must be one of polling, webhook, auto, got "fax"/);
    assert.match(lines.join('\n'), /WEBHOOK_HOST must be a URL/);
    assert.match(lines.join('\n'), /AUTO_SWITCH_MODE must be true or false/);
    return true;
  });
  assert.throws(() => loadConfig({ statusPort: '70000' }, {}), /--status-port must be between 0 and 65535/);
  assert.throws(() => loadConfig({}, { HEARTBEAT_INTERVAL_MS: '5000', HEARTBEAT_TIMEOUT_MS: '4000' }), /HEARTBEAT_TIMEOUT_MS \(4000\) must be greater/);
  assert.throws(() => loadConfig({}, { WEBHOOK_ALLOWED_SOURCES: 'telegram, 10.0.0.0/40' }), /WEBHOOK_ALLOWED_SOURCES: not an address or CIDR range: "10.0.0.0\/40"$/m);
  assert.equal(loadConfig({}, { WEBHOOK_ALLOWED_SOURCES: 'telegram,10.0.0.0/8', JOURNAL_SYNC: 'normal' }).journalSync, 'normal');
  assert.throws(() => loadConfig({}, { JOURNAL_SYNC: 'sometimes' }), /JOURNAL_SYNC must be one of full, normal/);
});

test('tokens: AES-256-GCM round trip, tamper and wrong key detected, masking', () => {
  const key = crypto.randomBytes(32);
  const t = fakeToken();
  const sealed = encryptToken(key, t);
  assert.ok(!sealed.includes(t.split(':')[1]!));
  assert.equal(decryptToken(key, sealed), t);
  assert.throws(() => decryptToken(crypto.randomBytes(32), sealed), /cannot be decrypted/);
  const parts = sealed.split(':');
  parts[3] = Buffer.from('x'.repeat(20)).toString('base64url');
  assert.throws(() => decryptToken(key, parts.join(':')), /cannot be decrypted/);
  assert.match(maskToken('123456:ABCDEFGHIJKLMNOPQRSTUVWXYZ012345678'), /^123456:AB…78$/);
  assert.match(webhookSecretToken('s', 'bot-1'), /^[A-Za-z0-9_-]{43}$/);
  assert.notEqual(webhookSecretToken('s', 'bot-1'), webhookSecretToken('s', 'bot-2'));
});

test('key file is generated once, owner-only; a malformed env key is refused', () => {
  const dir = tmp();
  const file = path.join(dir, 'data', 'encryption.key');
  const k1 = loadEncryptionKey(undefined, file);
  assert.equal(fs.statSync(file).mode & 0o777, 0o600);
  assert.deepEqual(loadEncryptionKey(undefined, file), k1);
  assert.throws(() => loadEncryptionKey('short', file), /32 bytes/);
  fs.rmSync(dir, { recursive: true });
});

test('registry: add/list/set/enable/rm; a bad row is reported with its reason and the rest load', () => {
  const dir = tmp();
  const db = path.join(dir, 'botfleet.db');
  const key = crypto.randomBytes(32);
  const r = openRegistry(db, key);
  const t1 = fakeToken();
  assert.equal(r.add({ name: 'Support Bot', token: t1 }), 'support-bot');
  assert.equal(r.add({ name: 'Support Bot', token: fakeToken() }), 'support-bot-2');
  r.add({ id: 'broken', name: 'Broken', token: fakeToken(), settings: { a: 1 } });
  assert.throws(() => r.add({ name: 'x', token: 'not-a-token' }), /does not look like a Telegram bot token/);
  assert.throws(() => r.add({ id: 'broken', name: 'x', token: fakeToken() }), /already exists/);
  assert.throws(() => r.setEnabled('ghost', true), /no bot with id "ghost"/);
  r.update('support-bot', { settings: { greeting: 'hi' }, mode: 'webhook' });
  r.setEnabled('support-bot-2', false);
  r.changedSinceLastCheck();
  // another connection writes garbage into one row, as a hand edit might
  const raw = new Database(db);
  raw.prepare("UPDATE bots SET settings = '{oops' WHERE id = 'broken'").run();
  raw.close();
  assert.equal(r.changedSinceLastCheck(), true, 'a commit from another connection is noticed');
  assert.equal(r.changedSinceLastCheck(), false);
  const { specs, invalid } = r.load();
  assert.deepEqual(specs.map((s) => [s.id, s.enabled, s.mode]), [['support-bot', true, 'webhook'], ['support-bot-2', false, null]]);
  assert.equal(specs[0]!.token, t1);
  assert.deepEqual(specs[0]!.settings, { greeting: 'hi' });
  assert.deepEqual(invalid, [{ id: 'broken', name: 'Broken', enabled: true, reason: 'settings are not valid JSON' }]);
  assert.ok(!JSON.stringify(r.list()).includes(t1.split(':')[1]!));
  r.remove('broken');
  assert.equal(r.list().length, 2);
  r.close();
  // reopening with the wrong key: rows are reported, not thrown
  const wrong = openRegistry(db, crypto.randomBytes(32));
  assert.equal(wrong.load().invalid.length, 2);
  assert.match(wrong.load().invalid[0]!.reason, /wrong encryption key/);
  wrong.close();
  const check = new Database(db);
  assert.equal(check.pragma('user_version', { simple: true }), 6, 'migrated: bots, dead_letters, bot_uids, restart_history, sources + meta, quarantine reasons');
  assert.equal(check.pragma('journal_mode', { simple: true }), 'wal');
  check.close();
  fs.rmSync(dir, { recursive: true });
});

test('dead letters: kept once per update, listed without text, replay bookkeeping, bounded per bot', () => {
  const dir = tmp();
  const r = openRegistry(path.join(dir, 'botfleet.db'), crypto.randomBytes(32));
  const update = (id: number) => ({ update_id: id, message: { message_id: 1, date: 0, chat: { id: 5, type: 'private' as const }, text: 'secret words' } });
  r.deadLetters.add('a', update(10), 'poison', 1000);
  r.deadLetters.add('a', update(10), 'poison', 2000); // the same update again: ignored
  r.deadLetters.add('b', update(11), 'poison', 3000);
  const all = r.deadLetters.list();
  assert.deepEqual(all.map((d) => [d.botId, d.updateId, d.kind, d.at, d.replays, d.lastResult]), [['a', 10, 'message', 1000, 0, null], ['b', 11, 'message', 3000, 0, null]]);
  assert.ok(!JSON.stringify(all).includes('secret words'), 'a listing carries no message text');
  const [row] = r.deadLetters.forReplay({ botId: 'a' });
  assert.equal((row!.update as { message?: { text?: string } }).message?.text, 'secret words');
  r.deadLetters.replayFailed(row!.id, 'failed');
  assert.deepEqual(r.deadLetters.list('a').map((d) => [d.replays, d.lastResult]), [[1, 'failed']]);
  assert.equal(r.deadLetters.remove({ id: row!.id }), 1);
  assert.equal(r.deadLetters.remove({ botId: 'b' }), 1);
  assert.deepEqual(r.deadLetters.forReplay({ id: 999 }), []);
  for (let i = 0; i < MAX_DEAD_LETTERS_PER_BOT + 5; i++) r.deadLetters.add('flood', update(100 + i), 'poison', i);
  const kept = r.deadLetters.list('flood');
  assert.equal(kept.length, MAX_DEAD_LETTERS_PER_BOT);
  assert.equal(kept[0]!.updateId, 105, 'the oldest were dropped');
  r.close();
  fs.rmSync(dir, { recursive: true });
});

test('IPC messages are parsed at the boundary; anything else is null', () => {
  const ack = { v: 1, type: 'ack', acks: [{ updateId: 5, ok: true }, { updateId: 6, ok: false }] };
  assert.deepEqual(parseWorkerMessage(ack), ack);
  assert.equal(parseWorkerMessage({ v: 1, type: 'ack', acks: [{ updateId: '5', ok: true }] }), null);
  // An idle worker's heartbeat says only that it is alive; one with counters must carry them all.
  assert.deepEqual(parseWorkerMessage({ v: 1, type: 'heartbeat', same: true, messages: 'junk' }), { v: 1, type: 'heartbeat', same: true }, 'nothing else of it is kept');
  assert.equal(parseWorkerMessage({ v: 1, type: 'heartbeat', messages: 1, errors: 0, queueDepth: 0, lastError: null, username: null }), null, 'rssBytes missing');
  assert.equal(parseWorkerMessage({ v: 1, type: 'begin', updateIds: [1, 2.5] }), null);
  assert.equal(parseWorkerMessage({ v: 2, type: 'ready', username: null }), null);
  assert.deepEqual(parseWorkerMessage({ v: 1, type: 'launch-missiles' }), { type: 'unknown', name: 'launch-missiles' });
  assert.equal(parseWorkerMessage('ready'), null);
  assert.equal(parseMasterMessage({ v: 1, type: 'update', updates: [{ update_id: 3 }, { update_id: -1 }] }), null);
  assert.ok(parseMasterMessage({ v: 1, type: 'update', updates: [{ update_id: 3, message: {} }, { update_id: 4 }] }));
  assert.equal(parseMasterMessage({ v: 1, type: 'init', bot: { id: 'x' } }), null);
  assert.ok(parseMasterMessage({ v: 1, type: 'update', updates: [{ update_id: 3 }], replay: true }));
  assert.equal(parseMasterMessage({ v: 1, type: 'update', updates: [{ update_id: 3 }], replay: 'yes' }), null);
  assert.ok(parseWorkerMessage({ v: 1, type: 'dlq', updateId: 3, error: 'poison', update: { update_id: 3 } }));
  assert.equal(parseWorkerMessage({ v: 1, type: 'dlq', updateId: 3, error: 'poison', update: 'text' }), null);
});

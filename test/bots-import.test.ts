/**
 * `botfleet bots import` (DESIGN.md): 1000 bots from one file in one transaction, on SQLite and
 * on PostgreSQL, with a report; a bad entry refused with why and the rest imported; a second
 * import of the same file changes nothing; NDJSON; an id the bots API holds refused.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CLI } from './helpers/fleet.js';
import { planImport } from '../master/store/registry-sync.js';
import { postgresBinDir, POSTGRES_MISSING, startLocalPostgres, type LocalPostgres } from '../scripts/postgres.js';
import type { ApiBot } from '../config/bots-api.js';

const token = (i: number) => `${100000 + i}:AAAA${crypto.createHash('sha256').update(String(i)).digest('base64url').slice(0, 31)}`;
const doc = (n: number, name = (i: number) => `Bot ${i}`) => Array.from({ length: n }, (_, i) => ({ id: `imp${String(i).padStart(4, '0')}`, name: name(i), token: token(i), mode: 'polling', handler: 'echo', settings: { n: i } }));

/** Run the CLI in `home` (with `env`); `input` on stdin. */
function cli(home: string, args: string[], env: Record<string, string> = {}, input = ''): { code: number | null; out: string; err: string; ms: number } {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [CLI, ...args], { env: { ...process.env, BOTFLEET_HOME: home, ...env }, input, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr, ms: performance.now() - t0 };
}

/** The import suite on one store (`env`: DATABASE_URL for PostgreSQL). */
async function importSuite(t: { diagnostic(s: string): void }, env: Record<string, string>): Promise<void> {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'botfleet-import-'));
  try {
    const file = path.join(home, 'bots.json');
    const bots = doc(1000);
    fs.writeFileSync(file, JSON.stringify({ bots: [...bots, { id: 'notoken', name: 'x' }, { ...bots[0], name: 'twice' }] }));
    const first = cli(home, ['bots', 'import', file], env);
    assert.equal(first.code, 0, first.err);
    assert.match(first.out, /^added 1000, changed 0, unchanged 0, refused 2$/m);
    assert.match(first.out, /^refused notoken: token is missing$/m);
    assert.match(first.out, /^refused entry 1001: id "imp0000" listed twice/m);
    t.diagnostic(`1000 bots imported in ${Math.round(first.ms)} ms (the CLI process included)`);
    const listed = JSON.parse(cli(home, ['bots', 'list', '--json'], env).out) as Array<{ id: string; source: string; token: string }>;
    assert.equal(listed.length, 1000);
    assert.ok(listed.every((b) => b.source === 'local' && !b.token.includes(token(0).slice(12))), 'local bots, tokens masked');
    const again = cli(home, ['bots', 'import', file], env);
    assert.match(again.out, /^added 0, changed 0, unchanged 1000, refused 2$/m, 'a second import changes nothing');
    fs.writeFileSync(file, doc(3, (i) => (i === 1 ? 'Renamed' : `Bot ${i}`)).map((b) => JSON.stringify(b)).join('\n') + '\n{not json\n');
    const nd = cli(home, ['bots', 'import', '--json', '-'], env, fs.readFileSync(file, 'utf8'));
    const r = JSON.parse(nd.out) as { added: string[]; changed: string[]; unchanged: string[]; refused: Array<{ entry: string; why: string }> };
    assert.deepEqual([r.added, r.changed, r.unchanged.length], [[], ['imp0001'], 2], 'NDJSON from stdin: the renamed bot changed');
    assert.deepEqual(r.refused, [{ entry: 'line 4', why: 'not JSON' }]);
    const bad = cli(home, ['bots', 'import', '-'], env, '"just a string"');
    assert.notEqual(bad.code, 0);
    assert.match(bad.err, /neither/);
  } finally {
    fs.rmSync(home, { recursive: true, force: true });
  }
}

test('bots import on SQLite: 1000 bots in one transaction, bad entries refused with why, a second import changes nothing, NDJSON', async (t) => {
  await importSuite(t, {});
});

describe('bots import on PostgreSQL', { skip: postgresBinDir() === null ? POSTGRES_MISSING : false }, () => {
  let pg: LocalPostgres;
  before(async () => (pg = await startLocalPostgres()));
  after(async () => pg?.stop());
  test('the same, one statement for the whole file', async (t) => {
    await importSuite(t, { DATABASE_URL: pg.url, BOTFLEET_ENCRYPTION_KEY: crypto.randomBytes(32).toString('hex') });
  });
});

test('an import never takes an id the bots API holds, nor writes an invalid entry', () => {
  const key = crypto.randomBytes(32);
  const bot = (id: string, invalid: string | null = null): ApiBot => ({ id, name: id, token: token(1), mode: null, handler: 'echo', settings: {}, enabled: true, apiRoot: null, invalid });
  const rows = new Map([['fromapi', { id: 'fromapi', source: 'api' } as Record<string, unknown>]]);
  const plan = planImport(rows, key, [bot('fromapi'), bot('broken', 'bots API: token is missing'), bot('fresh')], 1);
  assert.deepEqual(plan.result.added, ['fresh']);
  assert.deepEqual(plan.result.refused.map((r) => r.entry), ['fromapi', 'broken']);
  assert.equal(plan.result.refused[1]!.why, 'token is missing');
  assert.equal(plan.inserts.length, 1);
  assert.equal(plan.updates.length, 0);
});

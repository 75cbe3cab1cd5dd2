/**
 * The docs cannot drift from the code: the generated tables (settings, errors,
 * metrics) equal what `npm run docs` would write now, every relative link in the
 * README and docs/ resolves (file and heading), every environment variable the code
 * reads is in docs/configuration.md, the README stays a short front door, and each
 * command's --help names a page that exists.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { GENERATED_PAGES, fillPage, generatedBlocks } from '../scripts/docs/generate.js';
import { SETTINGS } from '../config/settings.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const read = (rel: string) => fs.readFileSync(path.join(ROOT, rel), 'utf8');
const DOC_FILES = ['README.md', 'CONTRIBUTING.md', ...fs.readdirSync(path.join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];

test('the generated tables in docs/ are what npm run docs writes from the code now', async () => {
  const blocks = await generatedBlocks();
  for (const rel of GENERATED_PAGES) {
    const page = read(rel);
    assert.match(page, /<!-- generated: [a-z-]+ -->/, `${rel} holds a generated block`);
    assert.ok(fillPage(page, blocks) === page, `${rel} is out of date: run npm run docs`);
  }
});

test('a setting added to the code without npm run docs makes the page stale', async () => {
  const blocks = await generatedBlocks();
  const page = read('docs/configuration.md');
  const grown = { ...blocks, settings: blocks.settings!.replace('|---|---|---|---|---|', '|---|---|---|---|---|\n| `NEW_SETTING` | `--new-setting` | `1` | 1 – ∞ | new |') };
  assert.notEqual(fillPage(page, grown), page);
});

/** GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens. */
const slug = (h: string) => h.trim().toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, '').replace(/ /g, '-');
const anchors = (md: string) => new Set([...md.replace(/```[\s\S]*?```/g, '').matchAll(/^#{1,6} (.+)$/gm)].map((m) => slug(m[1]!)));

test('every relative link in README.md, CONTRIBUTING.md and docs/ resolves, headings included', () => {
  const broken: string[] = [];
  let checked = 0;
  for (const rel of DOC_FILES) {
    const md = read(rel).replace(/```[\s\S]*?```/g, '');
    for (const m of md.matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = m[1]!;
      if (/^[a-z]+:/i.test(target)) continue;
      checked++;
      const [file, hash] = target.split('#') as [string, string | undefined];
      const abs = file === '' ? path.join(ROOT, rel) : path.resolve(path.dirname(path.join(ROOT, rel)), file);
      if (!fs.existsSync(abs)) broken.push(`${rel}: ${target} (no such file)`);
      else if (hash !== undefined && abs.endsWith('.md') && !anchors(fs.readFileSync(abs, 'utf8')).has(hash)) broken.push(`${rel}: ${target} (no such heading)`);
    }
  }
  assert.ok(checked >= 15, `links were found (${checked})`);
  assert.deepEqual(broken, []);
});

/** Every source file of the product (what runs for a user). */
function productFiles(): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts')) out.push(p);
    }
  };
  for (const d of ['master', 'worker', 'webhook-server', 'config', 'common', 'cli', 'scripts/emulator']) walk(path.join(ROOT, d));
  out.push(path.join(ROOT, 'scripts/demo.ts'));
  return out;
}

test('every environment variable the code reads is in docs/configuration.md', () => {
  const names = new Set(SETTINGS.map((s) => s.env));
  for (const f of productFiles()) {
    const src = fs.readFileSync(f, 'utf8');
    for (const m of src.matchAll(/\benv(?:\.([A-Z][A-Z0-9_]+)|\[\s*'([A-Z][A-Z0-9_]+)'\s*\])/g)) names.add((m[1] ?? m[2])!);
  }
  assert.ok(names.has('NO_COLOR') && names.has('LOG_LEVEL'), 'the scan sees reads outside the settings table');
  const doc = read('docs/configuration.md');
  assert.deepEqual([...names].filter((n) => !doc.includes('`' + n + '`')), []);
});

test('the README is a short front door: under ~300 lines, no benchmark history, links to every page', () => {
  const readme = read('README.md');
  assert.ok(readme.split('\n').length <= 300, `README.md has ${readme.split('\n').length} lines`);
  assert.doesNotMatch(readme, /\bSession \d+\b/, 'no benchmark history by session');
  for (const page of ['configuration', 'operations', 'metrics', 'deployment', 'security', 'errors', 'handlers', 'architecture', 'benchmarks']) {
    assert.ok(readme.includes(`(docs/${page}.md)`), `the README links docs/${page}.md`);
  }
  assert.match(readme, /```sh\nnpm test\n```/, 'the test command .ci/run calls');
  assert.match(read('.ci/run'), /^npm test$/m, '.ci/run calls the README\'s test command');
});

test('each command\'s --help names a doc page that exists', () => {
  const cli = path.join(ROOT, 'dist', 'cli', 'main.js');
  const commands = [[], ['start'], ['stop'], ['restart'], ['status'], ['describe'], ['logs'], ['bots'], ['bots', 'add'], ['dlq'], ['dlq', 'replay'], ['store', 'copy'], ['demo']];
  for (const c of commands) {
    const r = spawnSync(process.execPath, [cli, ...c, '--help'], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 0, `${c.join(' ')} --help: ${r.stderr}`);
    const more = /^More: (.+)$/m.exec(r.stdout);
    assert.ok(more, `botfleet ${c.join(' ')} --help names a page`);
    for (const page of more[1]!.matchAll(/\b((?:docs\/)?[\w-]+\.md)\b/g)) assert.ok(fs.existsSync(path.join(ROOT, page[1]!)), `${page[1]} exists`);
  }
});

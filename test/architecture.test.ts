/**
 * The master's wings and their one-way dependencies (DESIGN.md): host <- store <- delivery <-
 * lifecycle <- cluster <- surfaces. A wing may import its own files and the wings below it,
 * never one above; the webhook server imports nothing of the master (it defines the
 * delivery port the master implements). Read from the TypeScript sources' import lines.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/** Lower ranks are lower layers. */
export const WINGS = { host: 0, store: 1, delivery: 2, lifecycle: 3, cluster: 4, surfaces: 5 } as const;
type Wing = keyof typeof WINGS;

function tsFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? tsFiles(p) : e.name.endsWith('.ts') ? [p] : [];
  });
}

/** Relative imports of a file, resolved to repository paths (`master/host/lock.ts`). */
function importsOf(file: string): string[] {
  const src = fs.readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of src.matchAll(/(?:from|import)\s*\(?\s*['"](\.{1,2}\/[^'"]+)['"]/g)) {
    out.push(path.relative(ROOT, path.resolve(path.dirname(file), m[1]!)).replace(/\.js$/, '.ts'));
  }
  return out;
}

const wingOf = (rel: string): Wing | null => {
  const m = /^master\/(host|store|delivery|lifecycle|cluster|surfaces)\//.exec(rel);
  return m ? (m[1] as Wing) : null;
};

test('each wing imports only itself and the wings below it', () => {
  const wrong: string[] = [];
  let edges = 0;
  for (const file of tsFiles(path.join(ROOT, 'master'))) {
    const rel = path.relative(ROOT, file);
    const from = wingOf(rel);
    if (!from) continue;
    for (const target of importsOf(file)) {
      const to = wingOf(target);
      if (!to || to === from) continue;
      edges++;
      if (WINGS[to] > WINGS[from]) wrong.push(`${rel} -> ${target} (${from} must not depend on ${to})`);
      if (target === 'master/main.ts') wrong.push(`${rel} -> master/main.ts (only the entry wires)`);
    }
  }
  assert.deepEqual(wrong, []);
  assert.ok(edges > 0, 'the check saw cross-wing imports at all');
});

test('every master file but the entry (main.ts, wiring.ts) lives in a wing', () => {
  const loose = fs.readdirSync(path.join(ROOT, 'master')).filter((n) => n.endsWith('.ts') && !['main.ts', 'wiring.ts'].includes(n));
  assert.deepEqual(loose, []);
});

test('config and the CLI import neither the webhook server nor the scripts', () => {
  const wrong = ['config', 'cli'].flatMap((dir) => tsFiles(path.join(ROOT, dir)).flatMap((f) => importsOf(f).filter((t) => t.startsWith('webhook-server/') || t.startsWith('scripts/')).map((t) => `${path.relative(ROOT, f)} -> ${t}`)));
  assert.deepEqual(wrong, []);
});

test('the webhook server imports nothing of the master', () => {
  const wrong = tsFiles(path.join(ROOT, 'webhook-server')).flatMap((f) => importsOf(f).filter((t) => t.startsWith('master/')).map((t) => `${path.relative(ROOT, f)} -> ${t}`));
  assert.deepEqual(wrong, []);
});

test("only the dispatcher changes a child's lifecycle: no other master file assigns life, state, stateReason or proc", () => {
  const assigns = /\b(?:c|child|known)\.(life|state|stateReason|proc)\s*(?:=(?!=)|\?\?=)|Object\.assign\(\s*c\s*,\s*\{[^}]*\b(life|state|stateReason|proc)\s*:/g;
  const wrong: string[] = [];
  let seen = 0;
  for (const file of tsFiles(path.join(ROOT, 'master'))) {
    const rel = path.relative(ROOT, file);
    const hits = [...fs.readFileSync(file, 'utf8').matchAll(assigns)].map((m) => m[0]);
    if (rel === 'master/lifecycle/dispatcher.ts') seen = hits.length;
    else if (hits.length > 0) wrong.push(`${rel}: ${hits.join(', ')}`);
  }
  assert.deepEqual(wrong, []);
  assert.ok(seen >= 4, `the check sees the dispatcher's own assignments (${seen})`);
});

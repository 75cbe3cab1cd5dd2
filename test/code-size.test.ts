/**
 * The shape rules of issue #10 kept as a test: no function of the product's code over
 * {@link MAX_FUNCTION_LINES} lines, no file over {@link MAX_FILE_LINES}. Functions are
 * read with the TypeScript compiler's own parser (declarations, methods, arrows,
 * function expressions, constructors, accessors), measured from their first line to
 * their last; an object literal of methods counts per method, not as one function.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The product: what runs in a fleet (tests, benchmarks and the emulator are measured by their file size only). */
const PRODUCT = ['master', 'worker', 'webhook-server', 'config', 'common', 'cli'];
export const MAX_FUNCTION_LINES = 60;
/** "No file over ~300 lines": the tilde is 5%. */
export const MAX_FILE_LINES = 315;

function tsFiles(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? tsFiles(p) : e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [p] : [];
  });
}

/** Every function-like node of `file` with its length in lines. */
export function functionLengths(file: string): Array<{ name: string; line: number; lines: number }> {
  const src = ts.createSourceFile(file, fs.readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  const out: Array<{ name: string; line: number; lines: number }> = [];
  const visit = (node: ts.Node): void => {
    if (ts.isFunctionLike(node) && 'body' in node && node.body) {
      const start = src.getLineAndCharacterOfPosition(node.getStart(src)).line;
      const end = src.getLineAndCharacterOfPosition(node.getEnd()).line;
      const named = (node as ts.FunctionLikeDeclaration).name;
      const parent = node.parent;
      const name = named ? named.getText(src) : ts.isVariableDeclaration(parent) || ts.isPropertyAssignment(parent) ? parent.name.getText(src) : '(anonymous)';
      out.push({ name, line: start + 1, lines: end - start + 1 });
    }
    ts.forEachChild(node, visit);
  };
  visit(src);
  return out;
}

test(`no function of the product over ${MAX_FUNCTION_LINES} lines`, () => {
  const long = PRODUCT.flatMap((d) => tsFiles(path.join(ROOT, d)))
    .flatMap((f) => functionLengths(f).map((fn) => ({ ...fn, file: path.relative(ROOT, f) })))
    .filter((fn) => fn.lines > MAX_FUNCTION_LINES)
    .map((fn) => `${fn.file}:${fn.line} ${fn.name} (${fn.lines} lines)`);
  assert.deepEqual(long, []);
});

test(`no source file over ${MAX_FILE_LINES} lines`, () => {
  const big = [...PRODUCT, 'scripts']
    .flatMap((d) => tsFiles(path.join(ROOT, d)))
    .map((f) => ({ file: path.relative(ROOT, f), lines: fs.readFileSync(f, 'utf8').split('\n').length }))
    .filter((f) => f.lines > MAX_FILE_LINES)
    .map((f) => `${f.file} (${f.lines} lines)`);
  assert.deepEqual(big, []);
});

test('the measure sees a long function (the rule can fail)', () => {
  const tmp = fs.mkdtempSync(path.join(fs.realpathSync('/tmp'), 'botfleet-size-'));
  try {
    const file = path.join(tmp, 'long.ts');
    fs.writeFileSync(file, `export const o = {\n  short() {\n    return 1;\n  },\n  long() {\n${'    void 0;\n'.repeat(70)}  },\n};\n`);
    const found = functionLengths(file);
    assert.deepEqual(found.map((f) => [f.name, f.lines]), [['short', 3], ['long', 72]]);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

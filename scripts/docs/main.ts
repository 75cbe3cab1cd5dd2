/**
 * `npm run docs`: rewrites the generated tables of docs/ from the code (see
 * generate.ts). `--check` writes nothing and exits 1, naming the stale pages.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { GENERATED_PAGES, fillPage, generatedBlocks } from './generate.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const check = process.argv.includes('--check');
const blocks = await generatedBlocks();
const stale: string[] = [];
for (const rel of GENERATED_PAGES) {
  const file = path.join(root, rel);
  const before = fs.readFileSync(file, 'utf8');
  const after = fillPage(before, blocks);
  if (after === before) continue;
  stale.push(rel);
  if (!check) fs.writeFileSync(file, after);
}
if (check && stale.length > 0) {
  console.error(`stale: ${stale.join(', ')}: run npm run docs`);
  process.exit(1);
}
console.log(stale.length === 0 ? 'docs: up to date' : `docs: wrote ${stale.join(', ')}`);
process.exit(0);

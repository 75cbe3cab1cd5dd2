/**
 * `botfleet bots import FILE|-` (DESIGN.md): many bots at once, in the bots API's document
 * format (config/bots-api.ts: `{"bots": [...]}` or an array, as JSON, or NDJSON: one bot
 * object a line), in one transaction, with a report of what was added, changed, left as it
 * was, and refused with why. An entry that is not a valid bot is refused and the rest
 * imported; nothing is removed; a second import of the same file changes nothing.
 */
import fs from 'node:fs';
import { ErrorCodes, fail } from '../common/errors.js';
import { parseBotsDocument } from '../config/bots-api.js';
import type { ImportResult } from '../master/store/registry-sync.js';
import type { Store } from '../master/store/store.js';

/** Largest file read, bytes (10,000 bots with settings fit in a fraction of it). */
export const MAX_IMPORT_BYTES = 64 * 1024 * 1024;

const NEITHER = 'the file is neither {"bots": [...]}, an array of bots, nor NDJSON';

/** The document's bots: the whole text as JSON, else NDJSON (a line that is not JSON is refused by its number). @throws BotfleetError `BF_ERR_BAD_INPUT` for neither */
export function parseImport(text: string): { list: unknown[]; refused: ImportResult['refused'] } {
  let whole: unknown = undefined;
  try {
    whole = JSON.parse(text);
  } catch {
    // not one JSON value: NDJSON, below
  }
  if (Array.isArray(whole)) return { list: whole, refused: [] };
  const bots = (whole as { bots?: unknown } | null)?.bots;
  if (Array.isArray(bots)) return { list: bots, refused: [] };
  if (whole !== undefined && (typeof whole !== 'object' || whole === null)) throw fail(ErrorCodes.BAD_INPUT, NEITHER);
  // NDJSON (one object alone is one line of it).
  const list: unknown[] = [];
  const refused: ImportResult['refused'] = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    try {
      list.push(JSON.parse(line) as unknown);
    } catch {
      refused.push({ entry: `line ${i + 1}`, why: 'not JSON' });
    }
  });
  if (list.length === 0 && refused.length > 0) throw fail(ErrorCodes.BAD_INPUT, NEITHER);
  return { list, refused };
}

/** Read `source` (a path, or `-` for stdin) in 1 MiB chunks, at most {@link MAX_IMPORT_BYTES}. @throws BotfleetError `BF_ERR_BAD_INPUT` when larger */
export function readImport(source: string): string {
  const fd = source === '-' ? 0 : fs.openSync(source, 'r');
  try {
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const chunk = Buffer.allocUnsafe(1024 * 1024);
      const got = fs.readSync(fd, chunk, 0, chunk.length, null);
      if (got === 0) break;
      chunks.push(chunk.subarray(0, got));
      if ((total += got) > MAX_IMPORT_BYTES) throw fail(ErrorCodes.BAD_INPUT, `the file is larger than ${MAX_IMPORT_BYTES} bytes`);
    }
    return Buffer.concat(chunks).toString('utf8');
  } finally {
    if (fd !== 0) fs.closeSync(fd);
  }
}

/** Import `text` into `store` in one transaction. @throws BotfleetError `BF_ERR_BAD_INPUT` for a document that is not one at all, or over 10,000 bots (the bots API's bound) */
export async function importBots(store: Store, text: string): Promise<ImportResult> {
  const { list, refused } = parseImport(text);
  let doc;
  try {
    doc = parseBotsDocument(list);
  } catch (err) {
    throw fail(ErrorCodes.BAD_INPUT, (err as Error).message, err);
  }
  const r = await store.bots.importBots(doc.bots);
  // parseBotsDocument's refusals name the entry by its index: "entry 3: ...".
  const early = doc.rejected.map((line) => ({ entry: line.split(':')[0]!, why: line.slice(line.indexOf(':') + 1).trim() }));
  return { ...r, refused: [...refused, ...early, ...r.refused] };
}

/** The report `bots import` prints: the counts, then one line per refused entry. */
export function importReport(r: ImportResult): string {
  const head = `added ${r.added.length}, changed ${r.changed.length}, unchanged ${r.unchanged.length}, refused ${r.refused.length}`;
  return [head, ...r.refused.map((x) => `refused ${x.entry}: ${x.why}`)].join('\n');
}


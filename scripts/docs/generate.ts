/**
 * The reference tables of docs/, written from the code that defines them: the
 * settings (config/settings.ts), the error catalog (common/errors.ts) and the metrics
 * (a real scrape of master/surfaces/metrics.ts). Each table sits in its page between
 * `<!-- generated: NAME -->` and `<!-- end generated -->`; the rest of the page is
 * prose and is kept as it is. `npm run docs` writes them; test/docs.test.ts fails when
 * a page differs from what this would write.
 */
import { OTHER_ENVIRONMENT, SETTINGS, type SettingDef } from '../../config/settings.js';
import { ERROR_DOCS, ErrorCodes } from '../../common/errors.js';
import { WORKER_ENV_ALLOWLIST } from '../../master/lifecycle/child-process.js';
import { familiesOf, sampleScrape } from './sample-scrape.js';

/** A table cell: pipes escaped, one line. */
const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
const code = (s: string) => '`' + s + '`';

/** The unit a setting's name says (…Ms, …Mb, …Sec, …Bytes, …BytesPerSec), if any. */
function unitOf(d: SettingDef): string {
  const k = d.key;
  if (k.endsWith('BytesPerSec')) return 'bytes/s';
  if (k.endsWith('Ms')) return 'ms';
  if (k.endsWith('Mb')) return 'MB';
  if (k.endsWith('Sec')) return 's';
  if (k.endsWith('Bytes')) return 'bytes';
  if (k.endsWith('Percent')) return '%';
  return '';
}

/** What values a setting takes: the range of a number, the words of an enum, a boolean, a URL. */
function valuesOf(d: SettingDef): string {
  const t = d.type;
  switch (t.kind) {
    case 'int': return `${t.min} – ${t.max ?? '∞'}${unitOf(d) ? ' ' + unitOf(d) : ''}`;
    case 'bool': return 'true / false';
    case 'enum': return t.values.map(code).join(' / ');
    case 'url': return 'http(s) URL';
    case 'string': return 'text';
  }
}

/** The settings table, then the other environment variables. */
function settingsTable(): string {
  const rows = SETTINGS.map((d) => `| ${code(d.env)} | ${d.flag ? code('--' + d.flag) : '— (env only)'} | ${d.defaultDoc ?? (d.default === undefined ? '—' : code(d.default))} | ${valuesOf(d)} | ${cell(d.doc)} |`);
  const other = OTHER_ENVIRONMENT.map((o) => `| ${code(o.env)} | ${cell(o.doc)} |`);
  return [
    '| env | flag on `botfleet start` | default | values | meaning |', '|---|---|---|---|---|', ...rows, '',
    'Also read:', '', '| env | meaning |', '|---|---|', ...other, '',
    `Passed to workers from the master's environment (nothing else is): ${WORKER_ENV_ALLOWLIST.map(code).join(', ')}; the master sets ${code('HOME')} (the bot's data directory) and ${code('LOG_LEVEL')} itself, and ${code('MALLOC_ARENA_MAX')} to 1 unless its own environment sets it (glibc's malloc arenas: an idle worker ~190 KB smaller).`,
  ].join('\n');
}

/** The error catalog. */
function errorsTable(): string {
  const rows = Object.values(ErrorCodes).map((c) => `| ${code(c)} | ${cell(ERROR_DOCS[c].meaning)} | ${cell(ERROR_DOCS[c].action)} |`);
  return ['| code | meaning | what to do |', '|---|---|---|', ...rows].join('\n');
}

/** botfleet's own series, from a real scrape. */
async function metricsTable(): Promise<string> {
  const fams = familiesOf(await sampleScrape()).filter((f) => f.name.startsWith('botfleet_'));
  const rows = fams.map((f) => `| ${code(f.name)} | ${f.type} | ${f.labels.map(code).join(', ') || '—'} | ${cell(f.help)} |`);
  return ['| series | type | labels | meaning |', '|---|---|---|---|', ...rows].join('\n');
}

/** Every generated block, by name. */
export async function generatedBlocks(): Promise<Record<string, string>> {
  return { settings: settingsTable(), errors: errorsTable(), metrics: await metricsTable() };
}

/** The pages that hold generated blocks, relative to the repository root. */
export const GENERATED_PAGES = ['docs/configuration.md', 'docs/errors.md', 'docs/metrics.md'] as const;

/**
 * `page` with each generated block replaced by its current text.
 * @throws Error naming a block the page refers to that does not exist, or an unclosed block
 */
export function fillPage(page: string, blocks: Record<string, string>): string {
  return page.replace(/<!-- generated: ([a-z-]+) -->\n[\s\S]*?<!-- end generated -->/g, (_m, name: string) => {
    const body = blocks[name];
    if (body === undefined) throw new Error(`unknown generated block "${name}"`);
    return `<!-- generated: ${name} -->\n${body}\n<!-- end generated -->`;
  });
}

/** Small statistics and the result table of the benchmarks. */

/** Median, min and max of a sample. */
export interface Summary { median: number; min: number; max: number; n: number }

export function summarize(xs: number[]): Summary {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  const median = s.length === 0 ? NaN : s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { median, min: s[0] ?? NaN, max: s[s.length - 1] ?? NaN, n: s.length };
}

/** One row of the result table. `ratio` is botfleet / baseline; `ok` compares it with the target. */
export interface Row {
  measure: string;
  botfleet: string;
  baseline: string;
  ratio: number | null;
  target: string;
  ok: boolean | null;
}

export const fmt = (n: number, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : '-');
export const fmtSummary = (s: Summary, unit: string, digits = 1) => `${fmt(s.median, digits)} ${unit} (${fmt(s.min, digits)}–${fmt(s.max, digits)})`;

/** The table as printed. */
export function renderTable(rows: Row[]): string {
  const head = ['measure', 'botfleet', 'baseline', 'ratio', 'target', 'ok'];
  const cells = rows.map((r) => [r.measure, r.botfleet, r.baseline, r.ratio === null ? '-' : r.ratio.toFixed(2), r.target, r.ok === null ? '-' : r.ok ? 'yes' : 'NO']);
  const w = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) => '| ' + c.map((x, i) => x.padEnd(w[i]!)).join(' | ') + ' |';
  return [line(head), '|' + w.map((n) => '-'.repeat(n + 2)).join('|') + '|', ...cells.map(line)].join('\n');
}

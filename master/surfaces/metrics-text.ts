/**
 * The per-bot families of `/metrics`, written straight into Prometheus's text format
 * (version 0.0.4: https://prometheus.io/docs/instrumenting/exposition_formats/), one
 * family per event-loop turn. Hand-written because a measurement says so (bench
 * measure 9, 1000 bots, ~36,000 series): prom-client alone, the same series set
 * directly on one Gauge, took 91.6 ms median to serialize, and the master's scrape
 * through prom-client 98.9 ms, against the < 100 ms target; the master's own process
 * metrics, the webhook counters and histogram stay in prom-client.
 */

/** Escape a label value: backslash, double quote and line feed (the text format's rule). */
export const escapeLabel = (v: string): string => (/[\\"\n]/.test(v) ? v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n') : v);

/** A sample value as the text format writes it: `+Inf`, `-Inf`, `NaN`, else the number. */
export const formatValue = (v: number): string => (Number.isFinite(v) ? String(v) : Number.isNaN(v) ? 'NaN' : v > 0 ? '+Inf' : '-Inf');

/** Where a family's lines go (each without its newline). */
export interface LineSink { push(...lines: string[]): unknown }

/** One family: its sample lines are appended to `out` (without the HELP/TYPE header). */
export interface TextFamily {
  name: string;
  help: string;
  type: 'counter' | 'gauge' | 'histogram';
  lines(out: LineSink): void;
}

/** A family with its HELP and TYPE header (kept without samples, as prom-client does) into `body`. */
export function renderFamily(f: TextFamily, body: BodyBuilder): void {
  body.push(`# HELP ${f.name} ${f.help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`, `# TYPE ${f.name} ${f.type}`);
  f.lines(body);
}

/** Lines joined per chunk before they are written: ~30 KB strings, under V8's large-object size (a large string is memory mapped, and faulted in again, each time). */
const CHUNK_LINES = 512;

/**
 * A scrape's body built as bytes: lines joined a chunk at a time and written as UTF-8 into
 * one Buffer (allocUnsafe: malloc'd, outside V8's heap), sized from the last scrape. No
 * multi-MB string is made, flattened, measured and encoded again for the socket. perf of an
 * idle master at 1000 real workers (2.5 MB, 46,000 lines a scrape), all strings: 86 ms of
 * CPU a scrape, of it 18 % writing the string to the socket and ~30 % page faults on fresh
 * memory (clear_page, the large strings'), against 21 ms building the strings alone.
 */
export class BodyBuilder implements LineSink {
  private buf: Buffer;
  private len = 0;
  private readonly pending: string[] = [];

  /** @param sizeHint bytes expected (the last scrape's size) */
  constructor(sizeHint: number) {
    this.buf = Buffer.allocUnsafe(Math.max(64 * 1024, sizeHint));
  }

  push(...lines: string[]): void {
    for (const l of lines) this.pending.push(l);
    if (this.pending.length >= CHUNK_LINES) this.flush();
  }

  /** Text that ends with its own newline (prom-client's part). */
  text(s: string): void {
    this.flush();
    this.write(s);
  }

  /** The body: valid until the builder is used again. */
  finish(): Buffer {
    this.flush();
    return this.buf.subarray(0, this.len);
  }

  private flush(): void {
    if (this.pending.length === 0) return;
    this.pending.push('');
    this.write(this.pending.join('\n'));
    this.pending.length = 0;
  }

  private write(s: string): void {
    const need = this.len + s.length * 3; // UTF-8: at most 3 bytes per UTF-16 unit
    if (need > this.buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(need, this.buf.length * 2));
      this.buf.copy(grown, 0, 0, this.len);
      this.buf = grown;
    }
    this.len += this.buf.write(s, this.len, 'utf8');
  }
}

/** `{bot="<id>"}` for each bot id, escaped once per scrape. */
export function botLabels(): (bot: string) => string {
  const cache = new Map<string, string>();
  return (bot) => {
    let s = cache.get(bot);
    if (s === undefined) cache.set(bot, (s = `bot="${escapeLabel(bot)}"`));
    return s;
  };
}

/** One series per row, labelled `bot`. */
export function perBotFamily<T>(name: string, help: string, type: 'counter' | 'gauge', rows: () => Iterable<[string, T]>, value: (row: T) => number, label: (bot: string) => string): TextFamily {
  return {
    name, help, type,
    lines(out) {
      for (const [bot, row] of rows()) out.push(`${name}{${label(bot)}} ${formatValue(value(row))}`);
    },
  };
}

/** One labelled histogram's counts: per bucket (not cumulative, +Inf last) and the sum. */
export interface HistogramRow { bot: string; buckets: readonly number[]; sum: number }

/** A histogram family whose counts are kept elsewhere (the workers measure, the master adds them up): `_bucket{le}` cumulative, `_sum`, `_count`. */
export function histogramFamily(name: string, help: string, bounds: readonly number[], rows: () => Iterable<HistogramRow>, label: (bot: string) => string): TextFamily {
  const les = [...bounds.map(formatValue), '+Inf'];
  return {
    name, help, type: 'histogram',
    lines(out) {
      for (const r of rows()) {
        const l = label(r.bot);
        let acc = 0;
        for (let i = 0; i < les.length; i++) {
          acc += r.buckets[i] ?? 0;
          out.push(`${name}_bucket{${l},le="${les[i]}"} ${acc}`);
        }
        out.push(`${name}_sum{${l}} ${formatValue(r.sum)}`, `${name}_count{${l}} ${acc}`);
      }
    },
  };
}

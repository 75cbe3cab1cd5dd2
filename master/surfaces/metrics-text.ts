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

/** Where a family's lines go. */
export interface LineSink {
  /** One line, without its newline. */
  push(line: string): unknown;
  /** Lines joined by newlines, without the last one ('' adds nothing). */
  block(text: string): unknown;
}

/** One family: its sample lines are appended to `out` (without the HELP/TYPE header). */
export interface TextFamily {
  name: string;
  help: string;
  type: 'counter' | 'gauge' | 'histogram';
  lines(out: LineSink): void;
}

/** A family with its HELP and TYPE header (kept without samples, as prom-client does) into `body`. */
export function renderFamily(f: TextFamily, body: BodyBuilder): void {
  body.push(`# HELP ${f.name} ${f.help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`);
  body.push(`# TYPE ${f.name} ${f.type}`);
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

  /**
   * @param sizeHint bytes expected (the last scrape's size)
   * @param spare memory to write into when it holds `sizeHint` (a body no longer read)
   */
  constructor(sizeHint: number, spare: Buffer | null = null) {
    this.buf = spare && spare.length >= sizeHint ? spare : Buffer.allocUnsafe(Math.max(64 * 1024, sizeHint));
  }

  push(line: string): void {
    this.pending.push(line);
    if (this.pending.length >= CHUNK_LINES) this.flush();
  }

  block(text: string): void {
    if (text === '') return;
    this.flush();
    this.write(text);
    this.write('\n');
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

/**
 * The memory of scrape bodies handed out and given back: a body every caller released is
 * written again by the next scrape (see `Metrics.release`). Weak: a body never released is
 * left to the garbage collector.
 */
export class BodyMemory {
  /** Callers holding each body not yet released. */
  private readonly holders = new WeakMap<ArrayBufferLike, number>();
  private spare: Buffer | null = null;

  /** Memory for the next body, if a released one is free (given once). */
  take(): Buffer | null {
    const s = this.spare;
    this.spare = null;
    return s;
  }

  /** `body` is given to one more caller. */
  hold(body: Buffer): Buffer {
    this.holders.set(body.buffer, (this.holders.get(body.buffer) ?? 0) + 1);
    return body;
  }

  /** One caller of `body` no longer reads it; a body not held (a string, or released already) changes nothing. */
  release(body: string | Buffer): void {
    if (typeof body === 'string') return;
    const n = this.holders.get(body.buffer);
    if (n === undefined) return;
    if (n > 1) return void this.holders.set(body.buffer, n - 1);
    this.holders.delete(body.buffer);
    this.spare = Buffer.from(body.buffer, body.byteOffset, body.buffer.byteLength - body.byteOffset);
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

/** A bot's text in one family and the values it was made from (`num` for a single number). */
interface KeptEntry { vals: ReadonlyArray<string | number>; num: number; text: string; seenAt: number }

/**
 * A family's text kept across scrapes: each bot's lines while the values they were made from
 * stay the same (each `===`), and the family's whole text while no bot's changed, came or
 * went. An idle fleet's scrape then makes few new strings: measured at 1000 real idle
 * workers, a scrape made 12.5 MB of garbage (the sampling heap profiler), ~14 scavenges of
 * 2-3 ms each, a third of its CPU (a CPU profile of 30 scrapes).
 * One render: {@link begin}, {@link line} or {@link text} per bot, {@link end}.
 */
export class KeptText {
  private readonly kept = new Map<string, KeptEntry>();
  /** The entries of the last render, in its order. */
  private readonly order: KeptEntry[] = [];
  /** This render's texts, [0, parts) of it: written in place, not pushed (a growing array is garbage). */
  private readonly texts: string[] = [];
  private parts = 0;
  private render = 0;
  private at = 0;
  private changed = true;
  private joined = '';

  /** A render starts. */
  begin(): void {
    this.render++;
    this.at = 0;
    this.changed = false;
    this.parts = 0;
  }

  /** `bot`'s text for `vals` (not changed after): the kept one when every value is the same, else `make(row)`'s, kept. '' adds nothing. */
  text<R>(bot: string, vals: ReadonlyArray<string | number>, row: R, make: (row: R) => string): void {
    const e = this.entry(bot);
    if (!sameValues(e.vals, vals)) {
      e.vals = vals;
      e.text = make(row);
      this.changed = true;
    }
    if (e.text !== '') this.texts[this.parts++] = e.text;
  }

  /** `bot`'s line for one number `v`: kept while `v` is the same. */
  line(bot: string, v: number, make: (bot: string, v: number) => string): void {
    const e = this.entry(bot);
    if (e.num !== v || e.text === '') {
      e.num = v;
      e.text = make(bot, v);
      this.changed = true;
    }
    this.texts[this.parts++] = e.text;
  }

  /** The render ended: its text (lines joined by newlines, no last one; '' for none), the last render's when nothing changed. Bots not seen are forgotten. */
  end(): string {
    if (this.order.length !== this.at) {
      this.order.length = this.at;
      this.changed = true;
    }
    if (this.kept.size > this.at) for (const [bot, e] of this.kept) if (e.seenAt !== this.render) this.kept.delete(bot);
    if (this.texts.length !== this.parts) this.texts.length = this.parts;
    if (this.changed) this.joined = this.texts.join('\n');
    return this.joined;
  }

  private entry(bot: string): KeptEntry {
    let e = this.kept.get(bot);
    if (e === undefined) this.kept.set(bot, (e = { vals: [NaN], num: NaN, text: '', seenAt: 0 }));
    e.seenAt = this.render;
    if (this.order[this.at] !== e) {
      this.order[this.at] = e;
      this.changed = true;
    }
    this.at++;
    return e;
  }
}

const sameValues = (a: ReadonlyArray<string | number>, b: ReadonlyArray<string | number>): boolean => {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
};

/** One series per row, labelled `bot` (`id` of the row); kept text (see {@link KeptText}). */
export function perBotFamily<T>(name: string, help: string, type: 'counter' | 'gauge', rows: () => readonly T[], id: (row: T) => string, value: (row: T) => number, label: (bot: string) => string): TextFamily {
  const kept = new KeptText();
  const make = (bot: string, v: number) => `${name}{${label(bot)}} ${formatValue(v)}`;
  return {
    name, help, type,
    lines(out) {
      kept.begin();
      const all = rows(); // indexed: a for-of made an iterator result per row here (~700 KB a scrape at 1000 bots)
      for (let i = 0; i < all.length; i++) kept.line(id(all[i]!), value(all[i]!), make);
      out.block(kept.end());
    },
  };
}

/** One labelled histogram's counts: per bucket (not cumulative, +Inf last) and the sum. */
export interface HistogramRow { bot: string; buckets: readonly number[]; sum: number }

/** A histogram family whose counts are kept elsewhere (the workers measure, the master adds them up): `_bucket{le}` cumulative, `_sum`, `_count`; kept text (see {@link KeptText}). */
export function histogramFamily(name: string, help: string, bounds: readonly number[], rows: () => readonly HistogramRow[], label: (bot: string) => string): TextFamily {
  const les = [...bounds.map(formatValue), '+Inf'];
  const kept = new KeptText();
  const block = (r: HistogramRow): string => {
    const l = label(r.bot);
    const lines: string[] = [];
    let acc = 0;
    for (let i = 0; i < les.length; i++) {
      acc += r.buckets[i] ?? 0;
      lines.push(`${name}_bucket{${l},le="${les[i]}"} ${acc}`);
    }
    lines.push(`${name}_sum{${l}} ${formatValue(r.sum)}`, `${name}_count{${l}} ${acc}`);
    return lines.join('\n');
  };
  return {
    name, help, type: 'histogram',
    lines(out) {
      kept.begin();
      const all = rows();
      for (let i = 0; i < all.length; i++) kept.text(all[i]!.bot, [...all[i]!.buckets, all[i]!.sum], all[i]!, block);
      out.block(kept.end());
    },
  };
}

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

/** One family: its sample lines are appended to `out` (without the HELP/TYPE header). */
export interface TextFamily {
  name: string;
  help: string;
  type: 'counter' | 'gauge' | 'histogram';
  lines(out: string[]): void;
}

/** A family with its HELP and TYPE header (kept without samples, as prom-client does), ending in a newline. */
export function renderFamily(f: TextFamily): string {
  const out: string[] = [`# HELP ${f.name} ${f.help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`, `# TYPE ${f.name} ${f.type}`];
  f.lines(out);
  return out.join('\n') + '\n';
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

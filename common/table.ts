/** Plain-text formatting for terminals: tables, durations, sizes, and text that came from a bot. */

/** `93s`, `12m`, `5h`, `3d`. */
export function formatDuration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

/** Bytes as MB with one decimal. */
export const formatMb = (bytes: number) => (bytes > 0 ? `${(bytes / 1048576).toFixed(1)}MB` : '-');

/** Left-aligned columns separated by two spaces; control characters in cells escaped (names and errors come from bots and APIs). */
export function table(header: string[], cellRows: string[][]): string {
  const rows = cellRows.map((r) => r.map((c) => escapeControl(c)));
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

/**
 * Text from a bot (its name, an error it reported) made safe for a terminal: control
 * characters (C0, DEL, C1; ANSI escapes start with one) become `\xNN`, so a hostile
 * bot cannot rewrite the operator's screen. DESIGN.md: "names and error text from
 * bots are printed with control characters escaped".
 */
export function escapeControl(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** Plain-text formatting for the CLI: the status table, durations and sizes. */
import type { FleetStatus } from '../master/surfaces/status-server.js';

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

/** Left-aligned columns separated by two spaces. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

/** The fleet as `botfleet status` prints it. */
export function statusTable(s: FleetStatus): string {
  const rows = s.workers.map((w) => [
    w.botId, w.name, w.state, w.mode ?? '-', w.pid === null ? '-' : String(w.pid), w.pid === null ? '-' : formatDuration(w.uptimeMs),
    formatMb(w.rssBytes), w.cpuPercent === null ? '-' : `${w.cpuPercent.toFixed(1)}%`, `${w.restartsLastHour}/${w.restarts}`,
    String(w.messages), String(w.errors), w.lastExit?.reason ?? '-', w.stateReason ?? w.lastError?.message ?? '',
  ]);
  const states = Object.entries(s.totals.byState).map(([k, v]) => `${v} ${k}`);
  const head = [`master pid ${s.master.pid}`, `up ${formatDuration(s.master.uptimeMs)}`, `mode ${s.master.mode}`, `capacity ${s.master.capacity}`, ...(states.length ? states : ['no bots'])].join(', ');
  return head + '\n' + table(['BOT', 'NAME', 'STATE', 'MODE', 'PID', 'UPTIME', 'MEMORY', 'CPU', 'RESTARTS(1h/all)', 'MESSAGES', 'ERRORS', 'LAST EXIT', 'NOTE'], rows);
}

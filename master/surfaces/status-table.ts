/** The fleet as `botfleet status` (and the demo) print it: one line per bot, bot text escaped. */
import { escapeControl, formatDuration, formatMb, table } from '../../common/table.js';
import type { FleetStatus } from './status-server.js';

/** The fleet as `botfleet status` prints it. */
export function statusTable(s: FleetStatus): string {
  const rows = s.workers.map((w) => [
    w.botId, escapeControl(w.name), w.state, w.mode ?? '-', w.pid === null ? '-' : String(w.pid), w.pid === null ? '-' : formatDuration(w.uptimeMs),
    formatMb(w.rssBytes), w.cpuPercent === null ? '-' : `${w.cpuPercent.toFixed(1)}%`, `${w.restartsLastHour}/${w.restarts}`,
    String(w.messages), String(w.errors), w.lastExit?.reason ?? '-', escapeControl(w.stateReason ?? w.lastError?.message ?? ''),
  ]);
  const states = Object.entries(s.totals.byState).map(([k, v]) => `${v} ${k}`);
  const head = [`master pid ${s.master.pid}`, `up ${formatDuration(s.master.uptimeMs)}`, `mode ${s.master.mode}`, `capacity ${s.master.capacity}`, ...(states.length ? states : ['no bots'])].join(', ');
  return head + '\n' + table(['BOT', 'NAME', 'STATE', 'MODE', 'PID', 'UPTIME', 'MEMORY', 'CPU', 'RESTARTS(1h/all)', 'MESSAGES', 'ERRORS', 'LAST EXIT', 'NOTE'], rows);
}

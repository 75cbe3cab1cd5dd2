/** The fleet as `botfleet status` (and the demo) print it: one line per bot, bot text escaped. */
import { escapeControl, formatDuration, formatMb, table } from '../../common/table.js';
import type { FleetStatus } from './status-server.js';

/** ANSI colours of the states that need an eye (the state stays written out: colour is never the only sign). */
const STATE_COLOUR: Partial<Record<string, string>> = { running: '32', backoff: '33', draining: '33', starting: '36', pending: '36', quarantined: '31;1' };

/** The fleet as `botfleet status` prints it; `colour` paints the state column (ANSI, for a terminal). */
export function statusTable(s: FleetStatus, colour = false): string {
  const paint = (state: string) => (colour && STATE_COLOUR[state] ? `\x1b[${STATE_COLOUR[state]}m${state}\x1b[0m` : state);
  // A cluster's master lists every bot of the cluster: the OWNER column says which member runs each.
  const cluster = s.workers.some((w) => w.owner !== undefined);
  const rows = s.workers.map((w) => [
    w.botId, escapeControl(w.name), ...(cluster ? [w.owner ?? '-'] : []), w.state, w.mode ?? '-', w.pid === null ? '-' : String(w.pid), w.pid === null ? '-' : formatDuration(w.uptimeMs),
    formatMb(w.rssBytes), w.cpuPercent === null ? '-' : `${w.cpuPercent.toFixed(1)}%`, `${w.restartsLastHour}/${w.restarts}`,
    String(w.messages), String(w.errors), w.lastExit?.reason ?? '-', escapeControl(w.stateReason ?? w.lastError?.message ?? ''),
  ]);
  const states = Object.entries(s.totals.byState).map(([k, v]) => `${v} ${k}`);
  const head = [`master pid ${s.master.pid}`, `up ${formatDuration(s.master.uptimeMs)}`, `mode ${s.master.mode}`, `capacity ${s.master.capacity}`, ...(states.length ? states : ['no bots'])].join(', ');
  const out = head + '\n' + table(['BOT', 'NAME', ...(cluster ? ['OWNER'] : []), 'STATE', 'MODE', 'PID', 'UPTIME', 'MEMORY', 'CPU', 'RESTARTS(1h/all)', 'MESSAGES', 'ERRORS', 'LAST EXIT', 'NOTE'], rows);
  if (!colour) return out;
  // Painted after the layout, at the STATE column, so escape codes do not count in column widths.
  const lines = out.split('\n');
  const at = lines[1]!.indexOf('STATE');
  return lines.map((line, i) => {
    const w = i >= 2 ? s.workers[i - 2] : undefined;
    return w ? line.slice(0, at) + paint(w.state) + line.slice(at + w.state.length) : line;
  }).join('\n');
}

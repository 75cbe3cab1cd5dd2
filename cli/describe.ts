/**
 * `botfleet describe <bot>`: everything known about one bot. Its registry row (never the
 * token: its masked form; settings keys that look secret shown as [redacted]), and from
 * the running master its state, recent state changes and exits with reasons, restarts
 * in the window, quarantine end, and its log files. Bot text is printed escaped.
 */
import fs from 'node:fs';
import path from 'node:path';
import { ErrorCodes, fail } from '../common/errors.js';
import { escapeControl, formatDuration, formatMb } from '../common/table.js';
import { maskToken } from '../config/secrets.js';
import type { BotDescription } from '../master/lifecycle/supervisor.js';
import type { Store } from '../master/store/store.js';

/** Settings keys whose values are not printed (a handler's own API keys and passwords). */
const SECRET_KEY = /token|secret|password|passwd|key|credential|auth/i;

/** `settings` with the values of secret-looking keys, at any depth, replaced by "[redacted]". */
export function redactSettings(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(redactSettings);
  if (typeof v !== 'object' || v === null) return v;
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, SECRET_KEY.test(k) ? '[redacted]' : redactSettings(x)]));
}

/** The registry's part of a description. @throws BF_ERR_BOT_NOT_FOUND */
export async function registryPart(st: Store, botId: string): Promise<Record<string, unknown>> {
  const row = (await st.bots.list()).find((b) => b.id === botId);
  if (!row) throw fail(ErrorCodes.BOT_NOT_FOUND, `no bot with id "${botId}"`);
  const { specs, invalid } = await st.bots.load();
  const spec = specs.find((s) => s.id === botId);
  let settings: unknown;
  try {
    settings = redactSettings(JSON.parse(row.settings));
  } catch {
    settings = '(not JSON)';
  }
  return {
    id: row.id, name: row.name, source: row.source, enabled: row.enabled, mode: row.mode ?? 'default', handler: row.handler, settings,
    token: spec ? maskToken(spec.token) : '(unreadable)', problem: invalid.find((b) => b.id === botId)?.reason ?? null,
    createdAt: new Date(row.createdAt).toISOString(), updatedAt: new Date(row.updatedAt).toISOString(),
  };
}

/** Log files of the bot, newest first, with their sizes. */
export function logFiles(logsDir: string, botId: string): Array<{ file: string; bytes: number }> {
  const base = `worker_${botId}.log`;
  let names: string[] = [];
  try {
    names = fs.readdirSync(logsDir).filter((n) => n === base || (n.startsWith(`${base}.`) && /^\d+$/.test(n.slice(base.length + 1))));
  } catch {
    // no logs directory yet
  }
  const order = (n: string) => (n === base ? 0 : Number(n.slice(base.length + 1)));
  return names.sort((a, b) => order(a) - order(b)).map((n) => ({ file: path.join(logsDir, n), bytes: fs.statSync(path.join(logsDir, n)).size }));
}

/** The description as text. `live` is null when the master is not running. */
export function describeText(reg: Record<string, unknown>, live: BotDescription | null, logs: Array<{ file: string; bytes: number }>): string {
  const out: string[] = [];
  const kv = (k: string, v: unknown) => out.push(`${(k + ':').padEnd(18)}${escapeControl(typeof v === 'string' ? v : JSON.stringify(v))}`);
  kv('bot', `${String(reg.id)} (${String(reg.name)})`);
  kv('enabled', reg.enabled ? 'yes' : 'no');
  kv('mode', reg.mode);
  kv('handler', reg.handler);
  kv('token', reg.token);
  kv('settings', reg.settings);
  if (reg.problem) kv('problem', reg.problem);
  if (!live) {
    kv('state', 'unknown (the master is not running)');
  } else {
    const w = live.status;
    kv('state', `${w.state}${w.stateReason ? ` (${w.stateReason})` : ''}`);
    kv('worker', w.pid === null ? '-' : `pid ${w.pid}${live.uid !== null ? `, uid ${live.uid}` : ''}, up ${formatDuration(w.uptimeMs)}, ${formatMb(w.rssBytes)}, ${w.cpuPercent === null ? '-' : `${w.cpuPercent.toFixed(1)}% CPU`}`);
    kv('telegram', `${w.username ? `@${w.username}` : '-'}${w.note ? `; ${w.note}` : ''}`);
    kv('updates', `${w.updates.handled} handled, ${w.updates.failed} failed, ${w.updates.deduplicated} duplicates dropped (since the master started)`);
    kv('restarts', `${live.restartWindow.restarts.length} of ${live.restartWindow.max} in the last hour, ${w.restarts} since the master started`);
    if (w.quarantinedUntil) kv('quarantine ends', w.quarantinedUntil);
    else if (w.state === 'quarantined') kv('quarantine ends', 'never by itself (botfleet restart once fixed)');
    if (w.lastError) kv('last error', `${w.lastError.code}: ${w.lastError.message}`);
    if (live.droppedLogLines > 0) kv('log lines dropped', live.droppedLogLines);
    out.push('', 'recent exits:');
    if (live.exits.length === 0) out.push('  none');
    for (const e of [...live.exits].reverse()) out.push(`  ${e.at}  ${e.reason.padEnd(16)} ${e.signal ?? `code ${e.code}`}${e.errorCode ? `  ${e.errorCode}` : ''}`);
    out.push('', 'recent state changes:');
    for (const t of [...live.transitions].reverse()) out.push(`  ${t.at}  ${t.from} -> ${t.to}${t.reason ? `  ${escapeControl(t.reason)}` : ''}`);
  }
  out.push('', 'log files:');
  if (logs.length === 0) out.push('  none yet');
  for (const l of logs) out.push(`  ${l.file}  ${formatMb(l.bytes)}`);
  return out.join('\n');
}

/**
 * `botfleet logs [botId|--all] [-f] [-n N] [--level L] [--since 10m] [--json]`: the master's log,
 * a bot's, or all of them interleaved, pretty by default (pino-pretty), JSON lines as stored with `--json`. `-f`
 * follows across rotation (the rest of the file that became `.1` first, then the new
 * file), as `tail -F` does. A closed pipe (`| head`) ends it quietly with exit 0.
 */
import fs from 'node:fs';
import { escapeControl } from '../common/table.js';
import path from 'node:path';
import { ErrorCodes, fail } from '../common/errors.js';

/** pino's level values (https://getpino.io/#/docs/api?id=loggerlevels-object). */
export const LEVELS: Readonly<Record<string, number>> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 };
const UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `10m`, `90s`, `2h`, `1d`, `500ms` in ms. @returns null when it is not such a duration */
export function parseDuration(s: string): number | null {
  const m = /^(\d+)(ms|s|m|h|d)$/.exec(s.trim());
  return m ? Number(m[1]) * UNITS[m[2]!]! : null;
}

/** Which lines to show: at least `minLevel` (pino value), no older than `sinceMs` (epoch ms). */
export interface LineFilter { minLevel: number; sinceMs: number | null }

/**
 * Whether a stored line passes `f`. A line that is not JSON, or has no level or time,
 * passes (it is shown rather than hidden: it may be the one that explains a crash).
 */
export function passes(line: string, f: LineFilter): boolean {
  if (f.minLevel <= 10 && f.sinceMs === null) return true;
  let o: { level?: unknown; time?: unknown };
  try {
    o = JSON.parse(line) as typeof o;
  } catch {
    return true;
  }
  if (typeof o.level === 'number' && o.level < f.minLevel) return false;
  if (f.sinceMs !== null) {
    const t = typeof o.time === 'string' ? Date.parse(o.time) : typeof o.time === 'number' ? o.time : NaN;
    if (Number.isFinite(t) && t < f.sinceMs) return false;
  }
  return true;
}

/** The last `n` lines of `file`'s first `size` bytes that pass `f`, reading at most the last 4 MiB. */
function tail(file: string, size: number, n: number, f: LineFilter): string[] {
  if (n === 0) return [];
  const start = Math.max(0, size - 4 * 1024 * 1024);
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.alloc(size - start);
    fs.readSync(fd, buf, 0, buf.length, start);
    return buf.toString('utf8').split('\n').filter((l) => l !== '' && passes(l, f)).slice(-n);
  } finally {
    fs.closeSync(fd);
  }
}

/** Bytes of `file` from `pos` to its end (empty when it is gone). */
function readFrom(file: string, pos: number): string {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return '';
  }
  try {
    const size = fs.fstatSync(fd).size;
    if (size <= pos) return '';
    const buf = Buffer.alloc(size - pos);
    fs.readSync(fd, buf, 0, buf.length, pos);
    return buf.toString('utf8');
  } finally {
    fs.closeSync(fd);
  }
}

/** The line's top-level strings with control characters escaped (a bot's text must not drive the terminal). */
function escapeFields(o: Record<string, unknown>): Record<string, unknown> {
  for (const [k, v] of Object.entries(o)) if (typeof v === 'string') o[k] = escapeControl(v);
  return o;
}

/** What `showLogs` prints. */
export interface LogsOptions { lines: number; follow: boolean; json: boolean; filter: LineFilter }

/** How lines are printed: pretty (pino-pretty, control characters escaped) or as stored; only those passing the filter. */
async function printer(o: LogsOptions): Promise<(line: string, botId?: string) => void> {
  // Imported here, not at the top: the CLI module is also the master's entry, and the master never pretty-prints (~8 MB RSS).
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
  const pretty = o.json ? null : (await import('pino-pretty')).prettyFactory({ colorize: process.stdout.isTTY === true && !process.env.NO_COLOR, translateTime: 'SYS:standard', ignore: 'hostname' });
  return (l, botId) => {
    if (!passes(l, o.filter)) return;
    try {
      const obj = JSON.parse(l) as Record<string, unknown>;
      if (botId !== undefined) obj.botId ??= botId;
      process.stdout.write(pretty ? pretty(escapeFields(obj)) : JSON.stringify(obj) + '\n');
    } catch {
      process.stdout.write(escapeControl(botId !== undefined ? `[${botId}] ${l}` : l) + '\n');
    }
  };
}

/**
 * Follow `file` from `pos` (its inode `st`), calling `line` for each new complete line,
 * across rotation: the rest of the file that became `.1` first, then the new file.
 */
function follow(file: string, st: fs.Stats, pos: number, line: (l: string) => void): void {
  let rest = '';
  const emit = (text: string) => {
    const parts = (rest + text).split('\n');
    rest = parts.pop() ?? '';
    parts.filter((l) => l !== '').forEach(line);
  };
  fs.watchFile(file, { interval: 250 }, (cur) => {
    if (cur.ino !== 0 && cur.ino !== st.ino) {
      // Rotated: the file we read is now `.1` (when it is the same inode); finish it, then start the new one.
      const old = fs.statSync(`${file}.1`, { throwIfNoEntry: false });
      if (old && old.ino === st.ino) emit(readFrom(`${file}.1`, pos));
      st = cur;
      pos = 0;
    } else if (cur.size < pos) pos = 0; // truncated in place
    st = cur;
    if (cur.size === pos) return;
    const text = readFrom(file, pos);
    pos += Buffer.byteLength(text);
    emit(text);
  });
}

/** Print the log; with `follow`, keep printing new lines until interrupted. @throws BF_ERR_BAD_INPUT when there is no such log */
export async function showLogs(logsDir: string, botId: string | undefined, o: LogsOptions): Promise<void> {
  const file = path.join(logsDir, botId ? `worker_${botId}.log` : 'master.log');
  if (!fs.existsSync(file)) throw fail(ErrorCodes.BAD_INPUT, `no log file ${file}${botId ? ` (has bot "${botId}" ever started?)` : ''}`);
  const print = await printer(o);
  const st = fs.statSync(file);
  // Followed from exactly where the tail ended, so no line falls between them.
  tail(file, st.size, o.lines, o.filter).forEach((l) => print(l));
  if (!o.follow) return;
  follow(file, st, st.size, (l) => print(l));
  await new Promise<void>(() => undefined);
}

/** The bot id of a log file name (`worker_<id>.log`), `master` for master.log, null for anything else. */
export function logOwner(name: string): string | null {
  if (name === 'master.log') return 'master';
  const m = /^worker_(.+)\.log$/.exec(name);
  return m ? m[1]! : null;
}

/** A line's time in epoch ms (pino's ISO `time` or number), or 0. */
function timeOf(line: string): number {
  const m = /"time":(?:"([^"]+)"|(\d+))/.exec(line);
  if (!m) return 0;
  const t = m[1] !== undefined ? Date.parse(m[1]) : Number(m[2]);
  return Number.isFinite(t) ? t : 0;
}

/**
 * `botfleet logs --all`: the master's and every bot's log interleaved by time, each line
 * carrying `botId` (`master` for the master); with `follow`, new lines of every log as they
 * come, and of logs that appear (a bot started later), looked for every second.
 */
export async function showAllLogs(logsDir: string, o: LogsOptions): Promise<void> {
  if (!fs.existsSync(logsDir)) throw fail(ErrorCodes.BAD_INPUT, `no log directory ${logsDir}`);
  const print = await printer(o);
  const files = () => fs.readdirSync(logsDir).map((n) => [n, logOwner(n)] as const).filter((x): x is readonly [string, string] => x[1] !== null);
  const seen = new Map<string, fs.Stats>();
  const recent: Array<{ t: number; line: string; owner: string }> = [];
  for (const [name, owner] of files()) {
    const file = path.join(logsDir, name);
    const st = fs.statSync(file);
    seen.set(file, st);
    for (const line of tail(file, st.size, o.lines, o.filter)) recent.push({ t: timeOf(line), line, owner });
  }
  recent.sort((a, b) => a.t - b.t);
  for (const r of o.lines === 0 ? [] : recent.slice(-o.lines)) print(r.line, r.owner);
  if (!o.follow) return;
  const watch = (from: 'end' | 'start') => {
    for (const [name, owner] of files()) {
      const file = path.join(logsDir, name);
      if (seen.has(file) && from === 'start') continue;
      const st = seen.get(file) ?? fs.statSync(file);
      seen.set(file, st);
      follow(file, st, from === 'end' ? st.size : 0, (l) => print(l, owner));
    }
  };
  watch('end');
  setInterval(() => watch('start'), 1000);
  await new Promise<void>(() => undefined);
}

/** `botfleet logs [botId] [-f] [-n N] [--raw]`: the master's log or a bot's, pretty by default (pino-pretty). */
import fs from 'node:fs';
import { escapeControl } from '../common/table.js';
import path from 'node:path';
import { ErrorCodes, fail } from '../common/errors.js';

/** The last `n` lines of `file`, reading at most the last 4 MiB. */
function tail(file: string, n: number): string[] {
  const size = fs.statSync(file).size;
  const start = Math.max(0, size - 4 * 1024 * 1024);
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.alloc(size - start);
    fs.readSync(fd, buf, 0, buf.length, start);
    return n === 0 ? [] : buf.toString('utf8').split('\n').filter((l) => l !== '').slice(-n);
  } finally {
    fs.closeSync(fd);
  }
}

/** The line's top-level strings with control characters escaped (a bot's text must not drive the terminal). */
function escapeFields(o: Record<string, unknown>): Record<string, unknown> {
  for (const [k, v] of Object.entries(o)) if (typeof v === 'string') o[k] = escapeControl(v);
  return o;
}

/** Print the log; with `follow`, keep printing new lines until interrupted. */
export async function showLogs(logsDir: string, botId: string | undefined, o: { lines: number; follow: boolean; raw: boolean }): Promise<void> {
  const file = path.join(logsDir, botId ? `worker_${botId}.log` : 'master.log');
  if (!fs.existsSync(file)) throw fail(ErrorCodes.BAD_INPUT, `no log file ${file}${botId ? ` (has bot "${botId}" ever started?)` : ''}`);
  // Imported here, not at the top: the CLI module is also the master's entry, and the master never pretty-prints (~8 MB RSS).
  // `botfleet logs | head`: a closed pipe ends the command quietly (exit 0), as cat does.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
  const pretty = o.raw ? null : (await import('pino-pretty')).prettyFactory({ colorize: process.stdout.isTTY === true && !process.env.NO_COLOR, translateTime: 'SYS:standard', ignore: 'hostname' });
  const print = (l: string) => {
    try {
      process.stdout.write(pretty ? pretty(escapeFields(JSON.parse(l) as Record<string, unknown>)) : l + '\n');
    } catch {
      process.stdout.write(escapeControl(l) + '\n');
    }
  };
  tail(file, o.lines).forEach(print);
  if (!o.follow) return;
  let pos = fs.statSync(file).size;
  let rest = '';
  await new Promise<void>(() => {
    fs.watchFile(file, { interval: 250 }, (cur) => {
      if (cur.size < pos) pos = 0; // rotated
      if (cur.size === pos) return;
      const fd = fs.openSync(file, 'r');
      const buf = Buffer.alloc(cur.size - pos);
      fs.readSync(fd, buf, 0, buf.length, pos);
      fs.closeSync(fd);
      pos = cur.size;
      const parts = (rest + buf.toString('utf8')).split('\n');
      rest = parts.pop() ?? '';
      parts.filter((l) => l !== '').forEach(print);
    });
  });
}

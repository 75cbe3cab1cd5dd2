/**
 * A bot's log file `logs/worker_<botId>.log`: the worker's JSON lines as written,
 * other output (stderr, console.log) wrapped as JSON so the file stays NDJSON.
 * The bot's token is scrubbed from every line, whatever printed it.
 *
 * Bounded: lines arrive cut at MAX_OUTPUT_LINE_BYTES (child-process.ts; a cut line
 * is wrapped and marked `truncated`), and a bot may write `bytesPerSec` a second;
 * lines beyond that are dropped and counted, and the next line written says how
 * many were dropped (so a noisy bot cannot starve the master or fill the disk).
 */
import path from 'node:path';
import { openLogFile } from './log-file.js';
import { createBudget } from '../../common/budget.js';

export interface ChildLog {
  line(text: string, stream: 'stdout' | 'stderr', pid: number, token: string, truncated?: boolean): void;
  /** Lines dropped over the budget, since the log was opened. */
  droppedLines(): number;
  /** Its last RECENT_LINES lines as written (token scrubbed), oldest first, reduced to time, level and msg (the status page's panel). */
  recent(): RecentLine[];
  close(): Promise<void>;
}

/** Lines kept in memory per bot for the status page, each cut at RECENT_LINE_CHARS. */
export const RECENT_LINES = 30;
export const RECENT_LINE_CHARS = 300;

/** One recent line: `at` ISO time (or null), pino's numeric level, the message only (no other fields, so nothing a handler attached travels; a handler's own lines not even that). */
export interface RecentLine { at: string | null; level: number; msg: string }

/** A written line reduced to a {@link RecentLine}: parsed only when asked for, never on the write path. */
function recentLine(line: string): RecentLine {
  try {
    const o = JSON.parse(line) as Record<string, unknown>;
    // A handler's own lines (its logger, its stdout/stderr) may carry a user's words: the page says where to read them.
    const mine = !('handler' in o) && !('stream' in o);
    const msg = !mine ? '(a line of the handler: botfleet logs)' : typeof o.msg === 'string' ? o.msg : '';
    const at = typeof o.time === 'string' ? o.time : typeof o.time === 'number' ? new Date(o.time).toISOString() : null;
    return { at, level: typeof o.level === 'number' ? o.level : 30, msg: msg.slice(0, RECENT_LINE_CHARS) };
  } catch {
    // Every line written is JSON; one that does not parse was cut above, and its fields are not shown.
    return { at: null, level: 30, msg: '(a long line: see the log file)' };
  }
}

/** How a bot's log is kept. */
export interface ChildLogOptions {
  /** Rotate at this size (LOG_MAX_BYTES). */
  maxBytes: number;
  /** Rotated copies kept (LOG_KEEP_FILES). */
  keep?: number;
  /** The bot's output budget (WORKER_LOG_BYTES_PER_SEC). */
  bytesPerSec?: number;
  now?: () => number;
  /** Also given every line written, with its botId (LOG_TO_STDOUT). */
  echo?: (line: string) => void;
}

/** Open the bot's log `logs/worker_<botId>.log`. */
export function createChildLog(logsDir: string, botId: string, o: ChildLogOptions): ChildLog {
  const bytesPerSec = o.bytesPerSec ?? 1024 * 1024;
  const now = o.now ?? (() => performance.now());
  const file = openLogFile(path.join(logsDir, `worker_${botId}.log`), o.maxBytes, o.keep ?? 1);
  const echo = o.echo;
  // A worker's own JSON lines carry its botId unless they come from before its logger knew it.
  const idField = `"botId":${JSON.stringify(botId)}`;
  const ring: string[] = [];
  const write = (line: string) => {
    file.write(line + '\n');
    ring.push(line.length > 4096 ? line.slice(0, 4096) : line);
    if (ring.length > RECENT_LINES) ring.shift();
    if (echo) echo(line.includes(idField) ? line : `{${idField},${line.slice(1)}`);
  };
  const budget = createBudget(bytesPerSec);
  let dropped = 0;
  let droppedBytes = 0;
  let droppedTotal = 0;
  return {
    line(text, stream, pid, token, truncated = false) {
      if (!budget.take(text.length, now())) {
        dropped++;
        droppedBytes += text.length;
        droppedTotal++;
        return;
      }
      if (dropped > 0) {
        write(JSON.stringify({ level: 40, time: new Date().toISOString(), botId, msg: 'output over budget: lines dropped', dropped, droppedBytes }));
        dropped = 0;
        droppedBytes = 0;
      }
      const clean = token && text.includes(token) ? text.replaceAll(token, '[redacted]') : text;
      if (stream === 'stdout' && !truncated && clean.startsWith('{')) write(clean);
      else write(JSON.stringify({ level: stream === 'stderr' ? 50 : 30, time: new Date().toISOString(), workerPid: pid, botId, stream, msg: clean, ...(truncated ? { truncated: true } : {}) }));
    },
    droppedLines: () => droppedTotal,
    recent: () => ring.map(recentLine),
    close: () => file.close(),
  };
}

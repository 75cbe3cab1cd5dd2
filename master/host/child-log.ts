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
  close(): Promise<void>;
}

/** Open the bot's log (size-capped at `maxBytes`, one rotated copy; `bytesPerSec` output budget). */
export function createChildLog(logsDir: string, botId: string, maxBytes: number, bytesPerSec = 1024 * 1024, now: () => number = () => performance.now()): ChildLog {
  const file = openLogFile(path.join(logsDir, `worker_${botId}.log`), maxBytes);
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
        file.write(JSON.stringify({ level: 40, time: new Date().toISOString(), botId, msg: 'output over budget: lines dropped', dropped, droppedBytes }) + '\n');
        dropped = 0;
        droppedBytes = 0;
      }
      const clean = token && text.includes(token) ? text.replaceAll(token, '[redacted]') : text;
      if (stream === 'stdout' && !truncated && clean.startsWith('{')) file.write(clean + '\n');
      else file.write(JSON.stringify({ level: stream === 'stderr' ? 50 : 30, time: new Date().toISOString(), workerPid: pid, botId, stream, msg: clean, ...(truncated ? { truncated: true } : {}) }) + '\n');
    },
    droppedLines: () => droppedTotal,
    close: () => file.close(),
  };
}

/**
 * A bot's log file `logs/worker_<botId>.log`: the worker's JSON lines as written,
 * other output (stderr, console.log) wrapped as JSON so the file stays NDJSON.
 * The bot's token is scrubbed from every line, whatever printed it.
 */
import path from 'node:path';
import { openLogFile } from './log-file.js';

export interface ChildLog {
  line(text: string, stream: 'stdout' | 'stderr', pid: number, token: string): void;
  close(): Promise<void>;
}

/** Open the bot's log (size-capped at `maxBytes`, one rotated copy). */
export function createChildLog(logsDir: string, botId: string, maxBytes: number): ChildLog {
  const file = openLogFile(path.join(logsDir, `worker_${botId}.log`), maxBytes);
  return {
    line(text, stream, pid, token) {
      const clean = token && text.includes(token) ? text.replaceAll(token, '[redacted]') : text;
      if (stream === 'stdout' && clean.startsWith('{')) file.write(clean + '\n');
      else file.write(JSON.stringify({ level: stream === 'stderr' ? 50 : 30, time: new Date().toISOString(), pid, botId, stream, msg: clean }) + '\n');
    },
    close: () => file.close(),
  };
}

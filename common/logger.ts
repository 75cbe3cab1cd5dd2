/**
 * Logging: pino JSON lines. `redactingStream` wraps a byte sink so that given
 * secrets never reach it, whatever logged them (a library's error text included);
 * pino's own `redact` covers the known token fields on top.
 */
import pino, { type Logger } from 'pino';

/** Field paths pino replaces with "[redacted]" wherever they appear. */
export const REDACT_PATHS = ['token', '*.token', 'bot.token', 'secret', '*.secret', 'secretToken', 'headers["x-telegram-bot-api-secret-token"]', 'req.headers["x-telegram-bot-api-secret-token"]'];

/** A writable for pino that replaces every occurrence of each secret before writing. */
export function redactingStream(write: (line: string) => void, secrets: () => readonly string[]): { write(line: string): void } {
  return {
    write(line: string) {
      let out = line;
      for (const s of secrets()) if (s && out.includes(s)) out = out.replaceAll(s, '[redacted]');
      write(out);
    },
  };
}

/** A pino logger on `stream` with botfleet's redaction and ISO timestamps. */
export function createLogger(stream: { write(line: string): void }, level: string, bindings: Record<string, unknown> = {}): Logger {
  return pino({ level, base: { pid: process.pid, ...bindings }, redact: { paths: REDACT_PATHS, censor: '[redacted]' }, timestamp: pino.stdTimeFunctions.isoTime }, stream);
}

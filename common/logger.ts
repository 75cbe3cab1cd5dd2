/**
 * Logging: pino JSON lines. `redactingStream` wraps a byte sink so that given
 * secrets never reach it, whatever logged them (a library's error text included);
 * pino's own `redact` covers the known token fields on top.
 *
 * pino is required on first use, not imported: a worker's logger is a
 * {@link lazyLogger}, because pino's import is ~12 ms of a worker's ~100 ms
 * start (measured), and a healthy worker at LOG_LEVEL=warn may never log.
 */
import { createRequire } from 'node:module';
import type { Logger } from 'pino';

type Pino = typeof import('pino');
let pinoModule: Pino | undefined;
const loadPino = (): Pino => (pinoModule ??= createRequire(import.meta.url)('pino') as Pino);

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
  const pino = loadPino();
  return pino({ level, base: { pid: process.pid, ...bindings }, redact: { paths: REDACT_PATHS, censor: '[redacted]' }, timestamp: pino.stdTimeFunctions.isoTime }, stream);
}

/** pino's level values (https://getpino.io/#/docs/api?id=loggerlevels-object). */
const LEVEL_VALUES: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity };
const noop = () => undefined;

/**
 * A pino Logger that is created by `create` on first real use. Until then, calls
 * below `level` are dropped without creating it, `child()` returns another lazy
 * logger (its bindings applied when it is created), `isLevelEnabled`, `level`
 * and `flush` answer from `level`. Anything else creates the logger and is
 * forwarded to it. A level set on a parent after a lazy child was made but
 * before either was created does not reach that child.
 * @param level a pino level name; @throws nothing itself (create's errors surface on first use)
 */
export function lazyLogger(level: string, create: () => Logger): Logger {
  const threshold = LEVEL_VALUES[level] ?? LEVEL_VALUES.info!;
  let real: Logger | undefined;
  const get = () => (real ??= create());
  return new Proxy({} as Logger, {
    get(_t, prop) {
      if (!real && typeof prop === 'string') {
        const v = LEVEL_VALUES[prop];
        if (v !== undefined && v < threshold) return noop;
        if (prop === 'child') return (bindings: Record<string, unknown>, opts?: object) => lazyLogger(level, () => get().child(bindings, opts));
        if (prop === 'isLevelEnabled') return (l: string) => (LEVEL_VALUES[l] ?? Infinity) >= threshold;
        if (prop === 'level') return level;
        if (prop === 'flush') return noop;
      }
      const r = get();
      const v = Reflect.get(r, prop) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(r) : v;
    },
    set: (_t, prop, value) => Reflect.set(get(), prop, value),
    has: (_t, prop) => Reflect.has(get(), prop),
  });
}

/**
 * The error catalog: every error botfleet raises on purpose has a stable code
 * (`BF_ERR_*`), a one-line message fit for stderr, and an optional `cause`.
 * Callers branch on `code`, never on message text (the fastify `FST_ERR_*` model).
 */

/** Stable error codes. Add new ones here, never reuse a retired one. */
export const ErrorCodes = {
  CONFIG: 'BF_ERR_CONFIG',
  REGISTRY: 'BF_ERR_REGISTRY',
  BOT_NOT_FOUND: 'BF_ERR_BOT_NOT_FOUND',
  BAD_TOKEN: 'BF_ERR_BAD_TOKEN',
  BAD_INPUT: 'BF_ERR_BAD_INPUT',
  CRYPTO: 'BF_ERR_CRYPTO',
  IPC_CHILD_EXITED: 'BF_ERR_IPC_CHILD_EXITED',
  IPC_TIMEOUT: 'BF_ERR_IPC_TIMEOUT',
  IPC_CHANNEL_CLOSED: 'BF_ERR_IPC_CHANNEL_CLOSED',
  NOT_RUNNING: 'BF_ERR_NOT_RUNNING',
  ALREADY_RUNNING: 'BF_ERR_ALREADY_RUNNING',
  CONTROL: 'BF_ERR_CONTROL',
  HANDLER_LOAD: 'BF_ERR_HANDLER_LOAD',
  FORK: 'BF_ERR_FORK',
  IPC_SERIALIZE: 'BF_ERR_IPC_SERIALIZE',
  KEY_MISSING: 'BF_ERR_KEY_MISSING',
  ISOLATION: 'BF_ERR_ISOLATION',
  JOURNAL: 'BF_ERR_JOURNAL',
  /** A worker gave up on an error of its own (its `error` message's `fatal` reason). */
  WORKER_FATAL: 'BF_ERR_WORKER_FATAL',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/** An error from the catalog. `message` is one line, safe to print (never a token). */
export class BotfleetError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BotfleetError';
    this.code = code;
  }
}

/** True when `x` is one of the catalog's codes (e.g. one carried in a control-socket answer). */
export function isErrorCode(x: unknown): x is ErrorCode {
  return typeof x === 'string' && (Object.values(ErrorCodes) as string[]).includes(x);
}

/** Shorthand for `new BotfleetError(code, message, { cause })`. */
export function fail(code: ErrorCode, message: string, cause?: unknown): BotfleetError {
  return new BotfleetError(code, message, cause === undefined ? undefined : { cause });
}

/** The one-line message of any thrown value, for logs and stderr. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message.split('\n')[0] ?? String(err);
  return String(err);
}

/**
 * The exhaustiveness check of a switch over a union: called in its `default`, it
 * fails to compile when a member is not handled, and throws if one arrives anyway.
 * @throws Error naming the unhandled value
 */
export function assertNever(x: never): never {
  throw new Error(`unhandled case: ${JSON.stringify(x)}`);
}

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
  /** The bots API (BOTS_API_URL) could not be fetched, or its document was refused as a whole. */
  BOTS_API: 'BF_ERR_BOTS_API',
  /** A Bot API call of botfleet's own failed: no reply, a timeout, or Telegram's error. */
  TELEGRAM: 'BF_ERR_TELEGRAM',
  /** The store's database (PostgreSQL at DATABASE_URL) could not be reached in time, or refused a statement. */
  STORE: 'BF_ERR_STORE',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/** What an error code means and what an operator does about it: the source of docs/errors.md (`npm run docs`). */
export interface ErrorDoc {
  /** When it is raised, one sentence. */
  meaning: string;
  /** What to do, one sentence. */
  action: string;
}

/**
 * Every code's documentation. Typed as a record over {@link ErrorCode}, so a new code
 * without its entry does not compile, and docs/errors.md is written from it.
 */
export const ERROR_DOCS: Readonly<Record<ErrorCode, ErrorDoc>> = {
  BF_ERR_CONFIG: { meaning: 'A setting (environment variable or flag) is invalid; one line per bad value, naming it.', action: 'Fix the named values (docs/configuration.md); nothing was started.' },
  BF_ERR_REGISTRY: { meaning: 'The registry database cannot be opened or read (missing directory, permissions, a corrupt file).', action: 'Check the home (`BOTFLEET_HOME`): `data/` must be the master user\'s and the file a SQLite database.' },
  BF_ERR_BOT_NOT_FOUND: { meaning: 'No bot with that id is in the registry.', action: 'List the ids with `botfleet bots list`.' },
  BF_ERR_BAD_TOKEN: { meaning: 'Telegram answered 401 for the bot\'s token: the worker exits 78 and the bot is quarantined with reason `config`.', action: 'Set a valid token (`botfleet bots set` or the bots API); the change releases the quarantine.' },
  BF_ERR_BAD_INPUT: { meaning: 'A command or registry row was refused: a bad field, a bot from the bots API changed locally, an action that needs a stopped bot.', action: 'Read the one-line reason and correct the input; nothing else was changed.' },
  BF_ERR_CRYPTO: { meaning: 'The encryption key has the wrong size, or decrypts none of the stored tokens.', action: 'Restore the right key (`BOTFLEET_ENCRYPTION_KEY` or `data/encryption.key`); botfleet never writes a new key over encrypted tokens.' },
  BF_ERR_IPC_CHILD_EXITED: { meaning: 'A master started with `--daemon` exited before it came up.', action: 'Read `logs/master.log` for its last line.' },
  BF_ERR_IPC_TIMEOUT: { meaning: 'The master did not answer the control socket in time, or did not exit within the drain deadline on `stop`.', action: 'Look at `logs/master.log`; `stop` can be repeated, and a second SIGINT forces the stop.' },
  BF_ERR_IPC_CHANNEL_CLOSED: { meaning: 'A message could not be written to a worker: its channel is closed or the worker stopped reading it.', action: 'None: the worker is restarted by its policy; repeated, look at that bot\'s log.' },
  BF_ERR_NOT_RUNNING: { meaning: 'The command needs a running master and there is none for this home (exit 3 from `status`).', action: 'Start it with `botfleet start`, or point `--home` at the right home.' },
  BF_ERR_ALREADY_RUNNING: { meaning: 'Another master holds this home\'s lock.', action: 'Use that master, or stop it first with `botfleet stop`.' },
  BF_ERR_CONTROL: { meaning: 'The control socket refused a request: not JSON, too large, an unknown command or a wrong token.', action: 'Use the `botfleet` CLI of the same version, run by the master\'s user.' },
  BF_ERR_HANDLER_LOAD: { meaning: 'The bot\'s handler cannot be loaded (missing file, no default `setup`, a throw at import): quarantined with reason `config`.', action: 'Fix the handler (docs/handlers.md); `botfleet restart <bot>` or a change of the handler brings it back.' },
  BF_ERR_FORK: { meaning: 'The worker process could not be started (out of processes, file descriptors or memory).', action: 'Check the host\'s limits (`ulimit -n`, `TasksMax`, free memory); the bot backs off and is retried.' },
  BF_ERR_IPC_SERIALIZE: { meaning: 'A message for a worker could not be serialized.', action: 'Report it: it is a bug in botfleet.' },
  BF_ERR_KEY_MISSING: { meaning: 'The registry holds encrypted tokens but the key file is missing; no new key was written.', action: 'Restore `data/encryption.key` from the backup, or set `BOTFLEET_ENCRYPTION_KEY`.' },
  BF_ERR_ISOLATION: { meaning: 'Per-bot isolation cannot be applied: `WORKER_ISOLATION=uid` without the right to change user, a uid base held by another home, or a handler the bot\'s uid cannot read.', action: 'Run the master as root (or with the capabilities in docs/deployment.md), give each home its own `WORKER_UID_BASE`, or make the handler readable by other users.' },
  BF_ERR_JOURNAL: { meaning: 'The webhook journal cannot be opened, read or written (its writer thread failed).', action: 'Check the disk and `data/journal.db`; the webhook answers 503 meanwhile, so Telegram keeps the updates.' },
  BF_ERR_BOTS_API: { meaning: 'The bots API (BOTS_API_URL) could not be fetched (network, timeout, an HTTP error) or its document was refused as a whole; the last good list stays in force.', action: 'Check the API and `botfleet_config_last_reload_success`; one bad entry is not this error (that bot alone is stopped with its reason).' },
  BF_ERR_STORE: { meaning: 'The store\'s database (PostgreSQL at DATABASE_URL) could not be reached within its timeout, refused the connection or a statement, or holds a schema newer than this botfleet, or (`store copy`) already holds another fleet; the message names the server, never the password.', action: 'Check the server and the URL (host, port, user, database); botfleet retries with backoff and resumes by itself once it answers. For `store copy`, copy into an empty database or the one this home was copied into before.' },
  BF_ERR_TELEGRAM: { meaning: 'A Bot API call of botfleet\'s own (getMe, setWebhook, deleteWebhook, getWebhookInfo) failed: no reply, a timeout, or Telegram\'s error; a 401 quarantines the bot (config).', action: 'Check TELEGRAM_API_ROOT and the network; the bot is retried with backoff.' },
  BF_ERR_WORKER_FATAL: { meaning: 'A worker gave up on an error of its own (exit 1, reason `crash`), recorded as `lastExit.errorCode`.', action: 'Read the bot\'s log (`botfleet logs <bot>`); it is restarted within its restart budget.' },
};

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

/**
 * The control socket (`<home>/run/botfleet.sock`, owner-only): the CLI's way to
 * talk to a running master. One JSON request line, one JSON response line.
 * Requests: `{cmd:"status"}`, `{cmd:"describe", botId}`, `{cmd:"restart", botId?}`, `{cmd:"reload"}`,
 * `{cmd:"dlq-replay", id?, botId?}` (one dead letter by id, or one bot's),
 * `{cmd:"dlq-take", botId}` (a bot's journaled updates into the dead-letter queue).
 * Responses: `{ok:true, result}` or `{ok:false, error}` (one line, no secrets).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import net from 'node:net';
import { createLineSplitter } from '../../common/line-splitter.js';
import { BotfleetError, ErrorCodes, errorMessage, fail, isErrorCode } from '../../common/errors.js';

/** Longest request line accepted (the largest real one is a few hundred bytes). */
const MAX_REQUEST_BYTES = 64 * 1024;
/** A client that has not sent its request line by then is dropped. */
const REQUEST_DEADLINE_MS = 10_000;

/** Every command the control socket takes: the list the server checks and the CLI sends, written once. */
export const CONTROL_COMMANDS = ['status', 'describe', 'restart', 'reload', 'dlq-replay', 'dlq-take'] as const;

export type ControlRequest = { cmd: 'status' } | { cmd: 'describe'; botId: string } | { cmd: 'restart'; botId?: string } | { cmd: 'reload' } | { cmd: 'dlq-replay'; id?: number; botId?: string } | { cmd: 'dlq-take'; botId: string };
export type ControlHandler = (req: ControlRequest) => Promise<unknown>;

/** The token file beside the socket: `<socket>.token`. */
export const tokenFileOf = (socketPath: string) => `${socketPath}.token`;

/**
 * Listen on `socketPath` (a stale socket file is replaced). Every request must carry
 * the token written to `<socket>.token` (mode 0600, new at each start): a bot running
 * as the master's user (no per-bot uids) can connect to the socket, but the
 * permission model keeps it from reading the token.
 */
export async function startControlServer(socketPath: string, handle: ControlHandler): Promise<net.Server> {
  fs.rmSync(socketPath, { force: true });
  const token = crypto.randomBytes(32).toString('base64url');
  const tokenFile = tokenFileOf(socketPath);
  fs.rmSync(tokenFile, { force: true });
  fs.writeFileSync(tokenFile, token + '\n', { mode: 0o600, flag: 'wx' });
  const expected = Buffer.from(token);
  const tokenOk = (given: unknown) => typeof given === 'string' && given.length === token.length && crypto.timingSafeEqual(Buffer.from(given), expected);
  const server = net.createServer((sock) => {
    // One request line per connection, at most MAX_REQUEST_BYTES, within REQUEST_DEADLINE_MS.
    let answered = false;
    const deadline = setTimeout(() => sock.destroy(), REQUEST_DEADLINE_MS);
    deadline.unref();
    sock.on('error', () => undefined);
    sock.on('close', () => clearTimeout(deadline));
    const splitter = createLineSplitter({
      maxLineBytes: MAX_REQUEST_BYTES,
      onLine(line, truncated) {
        if (answered) return;
        answered = true;
        clearTimeout(deadline);
        sock.pause();
        const reply = (res: unknown) => {
          if (!sock.destroyed) sock.end(JSON.stringify(res) + '\n');
        };
        if (truncated) return reply({ ok: false, error: `request over ${MAX_REQUEST_BYTES} bytes`, code: ErrorCodes.CONTROL });
        void answer(line.toString('utf8')).then(reply);
      },
    });
    sock.on('data', (chunk: Buffer) => splitter.push(chunk));
  });
  async function answer(line: string): Promise<unknown> {
    let req: ControlRequest;
    try {
      req = JSON.parse(line) as ControlRequest;
    } catch {
      return { ok: false, error: 'request is not JSON', code: ErrorCodes.CONTROL };
    }
    if (!tokenOk((req as { token?: unknown })?.token)) return { ok: false, error: 'wrong or missing control token', code: ErrorCodes.CONTROL };
    if (!(CONTROL_COMMANDS as readonly string[]).includes((req as { cmd?: string }).cmd ?? '')) return { ok: false, error: 'unknown command', code: ErrorCodes.CONTROL };
    try {
      return { ok: true, result: await handle(req) };
    } catch (err) {
      return { ok: false, error: errorMessage(err), code: err instanceof BotfleetError ? err.code : ErrorCodes.CONTROL };
    }
  }
  const old = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(socketPath, resolve));
  } finally {
    process.umask(old);
  }
  return server;
}

/**
 * Send one request to a master's control socket.
 * @throws Error when no master listens there, or it answers `ok:false` (its error text).
 */
export async function controlRequest(socketPath: string, req: ControlRequest, timeoutMs = 120_000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(socketPath);
    let buf = '';
    const timer = setTimeout(() => sock.destroy(fail(ErrorCodes.IPC_TIMEOUT, `no answer from the master within ${timeoutMs} ms`)), timeoutMs);
    sock.setEncoding('utf8');
    let token: string | undefined;
    try {
      token = fs.readFileSync(tokenFileOf(socketPath), 'utf8').trim();
    } catch {
      token = undefined; // answered "wrong or missing control token" by a live master
    }
    sock.on('connect', () => sock.write(JSON.stringify({ ...req, token }) + '\n'));
    sock.on('data', (c: string) => (buf += c));
    sock.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(err.code === 'ENOENT' || err.code === 'ECONNREFUSED' ? fail(ErrorCodes.NOT_RUNNING, `botfleet is not running in ${path.dirname(path.dirname(socketPath))} (no control socket at ${socketPath}; --home or BOTFLEET_HOME picks another home)`) : err);
    });
    sock.on('end', () => {
      clearTimeout(timer);
      try {
        const res = JSON.parse(buf) as { ok: boolean; result?: unknown; error?: string; code?: string };
        if (res.ok) resolve(res.result);
        else reject(fail(isErrorCode(res.code) ? res.code : ErrorCodes.CONTROL, res.error ?? 'the master refused the request'));
      } catch {
        reject(fail(ErrorCodes.CONTROL, 'the master sent an unreadable answer'));
      }
    });
  });
}

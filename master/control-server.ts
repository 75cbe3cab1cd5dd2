/**
 * The control socket (`<home>/run/botfleet.sock`, owner-only): the CLI's way to
 * talk to a running master. One JSON request line, one JSON response line.
 * Requests: `{cmd:"status"}`, `{cmd:"restart", botId?}`, `{cmd:"reload"}`,
 * `{cmd:"dlq-replay", id?, botId?}` (one dead letter by id, or one bot's).
 * Responses: `{ok:true, result}` or `{ok:false, error}` (one line, no secrets).
 */
import fs from 'node:fs';
import net from 'node:net';
import { errorMessage } from '../common/errors.js';

export type ControlRequest = { cmd: 'status' } | { cmd: 'restart'; botId?: string } | { cmd: 'reload' } | { cmd: 'dlq-replay'; id?: number; botId?: string };
export type ControlHandler = (req: ControlRequest) => Promise<unknown>;

/** Listen on `socketPath` (a stale socket file is replaced). */
export async function startControlServer(socketPath: string, handle: ControlHandler): Promise<net.Server> {
  fs.rmSync(socketPath, { force: true });
  const server = net.createServer((sock) => {
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('error', () => undefined);
    sock.on('data', (chunk: string) => {
      buf += chunk;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      const line = buf.slice(0, nl);
      buf = '';
      void answer(line).then((res) => sock.end(JSON.stringify(res) + '\n'));
    });
  });
  async function answer(line: string): Promise<unknown> {
    let req: ControlRequest;
    try {
      req = JSON.parse(line) as ControlRequest;
    } catch {
      return { ok: false, error: 'request is not JSON' };
    }
    if (!['status', 'restart', 'reload', 'dlq-replay'].includes((req as { cmd?: string }).cmd ?? '')) return { ok: false, error: 'unknown command' };
    try {
      return { ok: true, result: await handle(req) };
    } catch (err) {
      return { ok: false, error: errorMessage(err) };
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
    const timer = setTimeout(() => sock.destroy(new Error(`no answer from the master within ${timeoutMs} ms`)), timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(JSON.stringify(req) + '\n'));
    sock.on('data', (c: string) => (buf += c));
    sock.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(err.code === 'ENOENT' || err.code === 'ECONNREFUSED' ? new Error('botfleet is not running (no control socket)') : err);
    });
    sock.on('end', () => {
      clearTimeout(timer);
      try {
        const res = JSON.parse(buf) as { ok: boolean; result?: unknown; error?: string };
        if (res.ok) resolve(res.result);
        else reject(new Error(res.error ?? 'the master refused the request'));
      } catch {
        reject(new Error('the master sent an unreadable answer'));
      }
    });
  });
}

/**
 * The status port while the master waits for its store at start (a database not up yet):
 * every request, `/health` first, is answered 503 with the reason as JSON
 * (`{"ok":false,"reason":…}`, the status server's own shape), so an orchestrator's probe
 * and an operator see why the master is not ready. Bound only once a wait begins, and closed
 * before the real status server takes the port. Nothing but the reason is served (no
 * authentication is needed: the reason names no secret).
 */
import http from 'node:http';
import fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { errorMessage } from '../../common/errors.js';

/** The waiting server's handle: `set` the reason (null: done waiting), `close` before the real server listens. */
export interface WaitingHealth {
  set(reason: string | null): void;
  close(): Promise<void>;
}

/** A waiting health server on `host:port`; `portsFile` gets its port once it listens (as the master's ports file does). */
export function waitingHealth(host: string, port: number, portsFile: string, logger: Logger): WaitingHealth {
  let reason: string | null = null;
  let server: http.Server | null = null;
  const start = () => {
    server = http.createServer((req, res) => {
      req.resume();
      res.writeHead(503, { 'content-type': 'application/json; charset=utf-8', 'retry-after': '5', 'cache-control': 'no-store' });
      res.end(JSON.stringify({ ok: false, reason }));
    });
    server.on('error', (err) => logger.warn({ err: errorMessage(err), port }, 'the status port cannot answer while the master waits'));
    server.listen(port, host, () => {
      const a = server?.address() as AddressInfo | null;
      if (a) fs.writeFileSync(portsFile, JSON.stringify({ status: a.port, webhook: null }) + '\n');
    });
  };
  return {
    set(r) {
      reason = r;
      if (r !== null && !server) start();
    },
    close: () => new Promise<void>((resolve) => {
      if (!server?.listening) return resolve();
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}

/**
 * The live status page on the status server: `GET /` (HTML, CSS and a small script
 * from `page/`, no build step, no CDN), `GET /api/events` (the live feed,
 * event-stream.ts), `GET /api/bots/:botId` (a bot's panel: sparklines, transitions,
 * exits, recent log lines) and, with STATUS_ACTIONS, `POST /api/bots/:botId/restart`
 * (also releases a quarantine) through the control socket's own restart command.
 *
 * What it shows is what `GET /api/workers/status` shows, reduced: ids, names, states,
 * reasons, numbers. No token, secret or message text (the log lines are time, level and
 * msg only, already scrubbed of the bot's token by child-log.ts).
 */
import fs from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { BotfleetError, ErrorCodes, errorMessage } from '../../common/errors.js';
import type { BotDescription } from '../lifecycle/supervisor.js';
import type { WorkerStatus } from '../lifecycle/child.js';
import { createFleetHistory, HISTORY_SAMPLE_MS, type BotSeries } from './fleet-history.js';
import { createEventStream, type EventStream, type StateEvent } from './event-stream.js';
import type { FleetStatus } from './fleet-status.js';
import type { Answer, Routes } from './http-routes.js';

/** The page's files, read once at start (a few KB) and served from memory. */
const ASSETS: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/page.js': { file: 'page.js', type: 'text/javascript; charset=utf-8' },
  '/page.css': { file: 'page.css', type: 'text/css; charset=utf-8' },
  '/favicon.svg': { file: 'favicon.svg', type: 'image/svg+xml' },
  '/favicon.ico': { file: 'favicon.svg', type: 'image/svg+xml' },
};
const PAGE_DIR = new URL('./page/', import.meta.url);

/** One tile of the snapshot event: a bot at a glance. Times ISO or ms as named. */
export interface Tile {
  botId: string; name: string; state: string; stateReason: string | null; mode: string | null; username: string | null;
  uptimeMs: number; rssBytes: number; restartsLastHour: number; restarts: number;
  /** Updates handled / failed per minute over the last minute; null until a sample interval has passed. */
  messagesPerMin: number | null; errorsPerMin: number | null;
  lastExit: { reason: string; at: string; code: number | null; signal: string | null } | null;
  quarantinedUntil: string | null;
  /** In a cluster, the member that runs it (null while none does); absent without a cluster. */
  owner?: string | null;
}

/** The `snapshot` event's data. */
export interface Snapshot {
  at: string;
  master: { pid: number; uptimeMs: number; mode: string; version: string; capacity: number };
  memoryCapBytes: number;
  restartWindowMax: number;
  actions: boolean;
  totals: Record<string, number>;
  bots: Tile[];
}

/** The panel's data (`GET /api/bots/:botId`). */
export interface Panel extends BotDescription { series: BotSeries; sampleMs: number }

export interface StatusPageOptions {
  status(): FleetStatus;
  describe(botId: string): BotDescription;
  memoryCapBytes: number;
  restartWindowMax: number;
  maxClients: number;
  /** Set with STATUS_ACTIONS: restart one bot (out of quarantine too) the CLI's way. */
  restart?(botId: string): Promise<unknown>;
  /** Headers the hijacked event stream must carry too. */
  headers: Record<string, string>;
  tickMs?: number;
}

/** What the master keeps of the page: the stream to publish state changes to, and the sampling to stop. */
export interface StatusPage { stream: EventStream; publishState(e: Omit<StateEvent, 'at'>): void; close(): void }

/** The tile of one status row. */
function tileOf(w: WorkerStatus, rates: { messages: number; errors: number } | null): Tile {
  return {
    botId: w.botId, name: w.name, state: w.state, stateReason: w.stateReason, mode: w.mode, username: w.username,
    uptimeMs: w.uptimeMs, rssBytes: w.rssBytes, restartsLastHour: w.restartsLastHour, restarts: w.restarts,
    messagesPerMin: rates ? Math.round(rates.messages * 10) / 10 : null, errorsPerMin: rates ? Math.round(rates.errors * 10) / 10 : null,
    lastExit: w.lastExit ? { reason: w.lastExit.reason, at: w.lastExit.at, code: w.lastExit.code, signal: w.lastExit.signal } : null,
    quarantinedUntil: w.quarantinedUntil, ...(w.owner !== undefined ? { owner: w.owner } : {}),
  };
}

/** Add the page's routes to the status server. @returns the stream and the sampler's stop */
export function registerStatusPage(app: Routes, o: StatusPageOptions): StatusPage {
  const assets = new Map(Object.entries(ASSETS).map(([route, a]) => [route, { body: fs.readFileSync(new URL(a.file, PAGE_DIR)), type: a.type }]));
  const history = createFleetHistory();
  const sample = () => history.sample(Date.now(), o.status().workers);
  const sampler = setInterval(sample, HISTORY_SAMPLE_MS);
  sampler.unref();
  const snapshot = (): Snapshot => {
    const s = o.status();
    const now = Date.now();
    return {
      at: new Date(now).toISOString(),
      master: { pid: s.master.pid, uptimeMs: s.master.uptimeMs, mode: s.master.mode, version: s.master.version, capacity: s.master.capacity },
      memoryCapBytes: o.memoryCapBytes, restartWindowMax: o.restartWindowMax, actions: o.restart !== undefined,
      totals: s.totals.byState, bots: s.workers.map((w) => tileOf(w, history.perMinute(w, now))),
    };
  };
  const stream = createEventStream({ maxClients: o.maxClients, snapshot, headers: o.headers, tickMs: o.tickMs });

  for (const [route, a] of assets) {
    app.get(route, () => ({ type: a.type, headers: { 'cache-control': 'no-cache' }, body: a.body }));
  }
  app.get('/api/events', (req, res) => void stream.attach(req, res));
  app.get('/api/bots/:botId', (_req, _res, { botId }) => {
    try {
      const d = o.describe(botId!);
      return { body: { ...d, series: history.series(botId!), sampleMs: HISTORY_SAMPLE_MS } satisfies Panel };
    } catch (err) {
      return errorAnswer(err);
    }
  });
  if (o.restart) {
    const restart = o.restart;
    app.post('/api/bots/:botId/restart', async (req, _res, { botId }) => {
      const why = crossOrigin(req);
      if (why) return { status: 403, body: { error: why } };
      try {
        return { body: await restart(botId!) };
      } catch (err) {
        return errorAnswer(err);
      }
    });
  }
  return {
    stream,
    publishState: (e) => stream.publishState({ ...e, at: new Date().toISOString() }),
    close() {
      clearInterval(sampler);
      stream.close();
    },
  };
}

/**
 * Why a state-changing request is refused as cross-site (null when it is same-origin):
 * it must carry `Origin` naming this very host (browsers always send it on a POST from
 * a script), and `Sec-Fetch-Site`, when sent, must be `same-origin` (Fetch Metadata).
 */
export function crossOrigin(req: Pick<IncomingMessage, 'headers'>): string | null {
  const origin = req.headers.origin;
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin') return `cross-site request refused (Sec-Fetch-Site: ${String(site).slice(0, 20)})`;
  if (typeof origin !== 'string') return 'an Origin header is required (same-origin requests only)';
  let host: string;
  try {
    host = new URL(origin).host;
  } catch {
    return 'bad Origin header';
  }
  return host === req.headers.host ? null : 'cross-origin request refused';
}

/** A thrown error as an answer: 404 for an unknown bot, 400 for bad input, else 500; the catalog code goes along. */
function errorAnswer(err: unknown): Answer {
  if (err instanceof BotfleetError) {
    const status = err.code === ErrorCodes.BOT_NOT_FOUND ? 404 : err.code === ErrorCodes.BAD_INPUT ? 400 : 500;
    return { status, body: { error: err.message, code: err.code } };
  }
  return { status: 500, body: { error: errorMessage(err) } };
}

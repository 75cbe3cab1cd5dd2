/**
 * `GET /api/events`: the status page's live feed as Server-Sent Events (WHATWG HTML
 * "Server-sent events"): `event: state` once per state change (`{ botId, from, to,
 * reason, at }`), `event: snapshot` every `tickMs` while anyone listens (the snapshot
 * serialized once per tick, the same bytes written to every client).
 *
 * Bounded: at most `maxClients` streams (one more gets 503); a client whose socket has
 * more than `maxBufferedBytes` queued in the master (it stopped reading, or reads slower
 * than the ticks come) is dropped, never buffered without limit. The browser's
 * EventSource reconnects by itself after `retry` ms.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

/** Bytes queued to one client before it is dropped: ~8 ticks of a 1000-bot snapshot. */
export const MAX_BUFFERED_BYTES = 1024 * 1024;
/** The reconnect delay the browser is told (ms). */
export const RECONNECT_MS = 2000;

export interface EventStreamOptions {
  maxClients: number;
  /** The `snapshot` event's data; called once per tick, only while a client listens. */
  snapshot(): unknown;
  /** Snapshot period (ms; the page's 1 s). */
  tickMs?: number;
  maxBufferedBytes?: number;
  /** Headers every stream answer carries besides its own (the status server's security headers). */
  headers?: Record<string, string>;
}

/** One state change as the stream carries it; `at` is an ISO time. */
export interface StateEvent { botId: string; from: string; to: string; reason: string | null; at: string }

export interface EventStream {
  /** Take over `res` as a stream (or answer 503 when full). @returns whether it was taken */
  attach(req: IncomingMessage, res: ServerResponse): boolean;
  /** Send a state change to every client now. */
  publishState(e: StateEvent): void;
  /** Streams open now. */
  clients(): number;
  /** Clients dropped for not reading, since start. */
  dropped(): number;
  /** End every stream and stop ticking (before the status server closes: open streams would hold it). */
  close(): void;
}

/** One SSE frame; `data` is JSON, so it holds no newline. */
const frame = (event: string, data: unknown) => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;

/** 503 with Retry-After: the stream is not opened (`why` in the JSON body). */
function refuse(res: ServerResponse, headers: EventStreamOptions['headers'], why: string): void {
  res.writeHead(503, { ...headers, 'content-type': 'application/json', 'retry-after': '5' });
  res.end(JSON.stringify({ error: why }));
}

/** The response head of an event stream (https://html.spec.whatwg.org/multipage/server-sent-events.html). */
function openStream(res: ServerResponse, headers: EventStreamOptions['headers']): void {
  res.writeHead(200, {
    ...headers, 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store',
    connection: 'keep-alive', 'x-accel-buffering': 'no', // nginx: pass the stream through unbuffered
  });
}

export function createEventStream(o: EventStreamOptions): EventStream {
  const clients = new Set<ServerResponse>();
  const maxBuffered = o.maxBufferedBytes ?? MAX_BUFFERED_BYTES;
  let dropped = 0;
  let tick: NodeJS.Timeout | null = null;
  let closed = false;

  const send = (res: ServerResponse, chunk: string) => {
    if (res.writableLength > maxBuffered) {
      dropped++;
      clients.delete(res);
      res.destroy();
      return;
    }
    res.write(chunk);
  };
  const broadcast = (chunk: string) => [...clients].forEach((res) => send(res, chunk));
  const ensureTicking = () => {
    if (tick || closed) return;
    tick = setInterval(() => {
      if (clients.size === 0) {
        clearInterval(tick!);
        tick = null;
        return;
      }
      broadcast(frame('snapshot', o.snapshot()));
    }, o.tickMs ?? 1000);
    tick.unref();
  };

  return {
    attach(req, res) {
      if (closed || clients.size >= o.maxClients) {
        refuse(res, o.headers, closed ? 'the master is stopping' : `at most ${o.maxClients} event streams (STATUS_MAX_CLIENTS)`);
        return false;
      }
      openStream(res, o.headers);
      clients.add(res);
      res.on('close', () => clients.delete(res));
      req.socket.setNoDelay(true);
      // The page is filled at once, not a tick later.
      send(res, `retry: ${RECONNECT_MS}\n\n` + frame('snapshot', o.snapshot()));
      ensureTicking();
      return true;
    },
    publishState(e) {
      if (clients.size > 0) broadcast(frame('state', e));
    },
    clients: () => clients.size,
    dropped: () => dropped,
    close() {
      closed = true;
      if (tick) clearInterval(tick);
      tick = null;
      for (const res of clients) res.end();
      clients.clear();
    },
  };
}

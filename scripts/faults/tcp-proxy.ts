/**
 * A TCP proxy on loopback in front of one server (a master's PostgreSQL, in the cluster's fault
 * tests): it passes bytes both ways, and on demand cuts every connection (`reset`: an RST to
 * each side) or blackholes them (`blackhole`: every byte of every open and new connection is
 * dropped, no FIN and no RST, the bad case of a network partition or a lost NAT entry). After
 * `heal` new connections pass again; the blackholed ones stay dead, as their lost bytes left
 * them (each side must find that out by its own timeouts).
 */
import net from 'node:net';

/** One client connection and its upstream; `dead` once blackholed (nothing passes any more). */
interface Pair { client: net.Socket; upstream: net.Socket | null; dead: boolean }

/** A running proxy; `port` is where to connect instead of the target. */
export interface TcpProxy {
  readonly port: number;
  /** Connections accepted so far. */
  readonly accepted: number;
  /** RST every open connection (both sides); new ones pass. */
  reset(): void;
  /** Drop every byte of every open and new connection, silently, until `heal`. */
  blackhole(): void;
  /** New connections pass again (the blackholed ones stay dead). */
  heal(): void;
  /** Close the listener and destroy every connection. */
  stop(): Promise<void>;
}

/** Start a proxy on 127.0.0.1 (a free port) to `target`. */
export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const pairs = new Set<Pair>();
  let holed = false;
  let accepted = 0;
  const server = net.createServer((client) => {
    accepted++;
    const pair: Pair = { client, upstream: null, dead: holed };
    pairs.add(pair);
    client.on('error', () => undefined);
    client.on('close', () => {
      pairs.delete(pair);
      if (!pair.dead) pair.upstream?.destroy();
    });
    if (pair.dead) return; // accepted, never answered
    const up = net.connect(target.port, target.host);
    pair.upstream = up;
    up.on('error', () => undefined);
    up.on('close', () => !pair.dead && client.destroy());
    client.on('data', (d: Buffer) => void (!pair.dead && up.write(d)));
    up.on('data', (d: Buffer) => void (!pair.dead && client.write(d)));
    client.on('end', () => !pair.dead && up.end());
    up.on('end', () => !pair.dead && client.end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    get accepted() {
      return accepted;
    },
    reset() {
      const rst = (s: net.Socket | null) => {
        if (!s || s.destroyed) return;
        if (s.connecting) s.destroy();
        else s.resetAndDestroy();
      };
      for (const p of pairs) {
        rst(p.client);
        rst(p.upstream);
      }
    },
    blackhole() {
      holed = true;
      for (const p of pairs) p.dead = true;
    },
    heal() {
      holed = false;
    },
    async stop() {
      for (const p of pairs) {
        p.client.destroy();
        p.upstream?.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * Baselines for the webhook path, each a minimal fastify app on loopback:
 * `alone` answers 200 at once (the HTTP ceiling: parse and routing only);
 * `ipc` forwards each update to one of N bare children over IPC and answers
 * after that child's ack (the ceiling of fastify + IPC + ack, no supervision).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import Fastify from 'fastify';
import { endAll, forkBare, onCleanup, terminate, track } from './harness.js';

const BASELINE_MAIN = fileURLToPath(new URL('./baseline-main.js', import.meta.url));

/** A baseline running in its own process (baseline-main.js). */
export interface BaselineProcess { url: string; botIds: string[]; pid: number; stop(): Promise<void> }

/** Start a baseline in a process of its own; resolves once it listens. */
export async function spawnBaseline(kind: 'alone' | 'ipc', children: number): Promise<BaselineProcess> {
  const p = track(spawn(process.execPath, [BASELINE_MAIN, kind, String(children)], { stdio: ['ignore', 'pipe', 'inherit'] }));
  const stop = () => terminate(p);
  onCleanup(stop);
  for await (const line of readline.createInterface({ input: p.stdout! })) {
    const { url, botIds } = JSON.parse(line) as { url: string; botIds: string[] };
    return { url, botIds, pid: p.pid!, stop };
  }
  throw new Error(`the ${kind} baseline exited before listening`);
}

/** Start a baseline; resolves with its URL and a stop function. */
export async function startBaseline(kind: 'alone' | 'ipc', children: number): Promise<{ url: string; botIds: string[]; stop(): Promise<void> }> {
  const app = Fastify({ logger: false });
  const kids: ChildProcess[] = [];
  const waiting = new Map<number, () => void>();
  const botIds = Array.from({ length: children }, (_, i) => `b${String(i).padStart(3, '0')}`);
  if (kind === 'ipc') {
    for (let i = 0; i < children; i++) {
      const { child } = await forkBare();
      child.on('message', (m: { type?: string; updateId?: number }) => {
        if (m.type === 'ack' && m.updateId !== undefined) {
          waiting.get(m.updateId)?.();
          waiting.delete(m.updateId);
        }
      });
      kids.push(child);
    }
  }
  app.post<{ Params: { botId: string }; Body: { update_id: number } }>('/webhook/:botId', async (req) => {
    if (kind === 'alone') return { ok: true };
    const child = kids[Number(req.params.botId.slice(1)) % kids.length]!;
    await new Promise<void>((resolve) => {
      waiting.set(req.body.update_id, resolve);
      child.send({ v: 1, type: 'update', update: req.body });
    });
    return { ok: true };
  });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  const stop = async () => {
    await app.close();
    await endAll(kids);
  };
  onCleanup(stop);
  return { url, botIds, stop };
}

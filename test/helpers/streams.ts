/**
 * Streaming chat updates through a fleet while its processes are SIGKILLed, and checking
 * what came back: every update answered, in order per chat (journal.test.ts, and the same
 * on PostgreSQL in store-fleet.test.ts).
 */
import assert from 'node:assert/strict';
import type { SentMessage } from '../../scripts/emulator/bot-state.js';
import type { Fleet } from './fleet.js';
import { waitFor } from './wait.js';

/**
 * The replies of each chat as a list of texts; `collapsed` with repeats left out (the
 * first reply to each text, in arrival order). A redelivery repeats what a dead worker
 * had in flight, or what a dead master had not yet recorded as acked: at least once.
 */
export function repliesByChat(sent: SentMessage[], chats: number[]): Map<number, { all: string[]; collapsed: string[] }> {
  const out = new Map(chats.map((c) => [c, { all: [] as string[], collapsed: [] as string[], seen: new Set<string>() }]));
  for (const m of sent) {
    const r = out.get(m.chat_id);
    if (!r) continue;
    r.all.push(m.text);
    if (!r.seen.has(m.text)) r.collapsed.push(m.text);
    r.seen.add(m.text);
  }
  return out;
}

/** SIGKILL bot `id`'s current worker once `sent` has at least `after` replies; resolves with its pid. */
export async function killWorkerAfter(fleet: Fleet, id: string, after: number, seenPids: Set<number>): Promise<number> {
  const w = await fleet.waitWorker(id, (x) => x.state === 'running' && x.pid !== null && !seenPids.has(x.pid), 20_000, `a new running worker of ${id}`);
  await waitFor(() => fleet.tg(id).sent.length >= after, 30_000, `${after} replies`, 5);
  process.kill(w.pid!, 'SIGKILL');
  seenPids.add(w.pid!);
  return w.pid!;
}

/** SIGKILL the master once bot `id` has `after` replies, and start a new one on the same home. */
export async function killMasterAfter(fleet: Fleet, id: string, after: number): Promise<void> {
  await waitFor(() => fleet.tg(id).sent.length >= after, 30_000, `${after} replies`, 5);
  const m = fleet.master!;
  m.kill('SIGKILL');
  await waitFor(() => m.signalCode !== null, 5000, 'the master dying');
  await fleet.startMaster();
}

/** A worker kill at `n` replies, or `{ master: n }`: the master SIGKILLed at n replies and started again. */
export type KillAt = number | { master: number };

/**
 * Stream `perChat` updates into each of `chatCount` chats of bot `id` (its handler
 * answers `ok: <text>`), SIGKILL as `killAt` says, wait for a reply to every update, and
 * check each chat got every update, in order of first handling (repeats left out: see
 * {@link repliesByChat}).
 * @returns how many updates were handled twice
 */
export async function streamThroughKills(fleet: Fleet, id: string, chatCount: number, perChat: number, killAt: KillAt[]): Promise<number> {
  const tg = fleet.tg(id);
  const chats = Array.from({ length: chatCount }, (_, i) => 1000 + i);
  const expected = new Map(chats.map((c) => [c, [] as string[]]));
  for (let n = 0; n < perChat; n++) {
    for (const c of chats) {
      fleet.emulator.userSends(tg, c, `m${n}`);
      expected.get(c)!.push(`ok: m${n}`);
    }
  }
  const seen = new Set<number>();
  for (const k of killAt) {
    if (typeof k === 'number') await killWorkerAfter(fleet, id, k, seen);
    else await killMasterAfter(fleet, id, k.master);
  }
  await waitFor(() => [...repliesByChat(tg.sent, chats).values()].every((r) => r.collapsed.length >= perChat), 60_000, `a reply to each of the ${chatCount * perChat} updates`);
  const byChat = repliesByChat(tg.sent, chats);
  let duplicates = 0;
  for (const c of chats) {
    const r = byChat.get(c)!;
    assert.deepEqual(r.collapsed, expected.get(c), `chat ${c}: every update, in order`);
    duplicates += r.all.length - r.collapsed.length;
  }
  // A handler that replied and died before its ack was seen runs again (at least once): at most one per chat per
  // worker kill. A master kill repeats the acks not yet committed (the handling rate, up to 2000/s here, times
  // LAZY_FLUSH_MS plus a commit: up to 200) and the handlers running when the worker saw its channel close (one per chat).
  const workerKills = killAt.filter((k) => typeof k === 'number').length;
  const bound = workerKills * chatCount + (killAt.length - workerKills) * (200 + chatCount);
  assert.ok(duplicates <= bound, `${duplicates} handled twice (at most ${bound})`);
  return duplicates;
}

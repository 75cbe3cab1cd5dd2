/**
 * The supervisor with scripted fake children (suture's and concurrently's practice):
 * `fork` is replaced by a fake whose messages and exits the test drives, so each
 * lifecycle path is exercised without a real worker. Telegram's side (deleteWebhook
 * before polling) is the emulator on loopback. Every wait is on an event with a deadline.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import { loadConfig } from '../config/load.js';
import type { ExitInfo, ForkOptions, WorkerProcess } from '../master/lifecycle/child-process.js';
import type { BotSpec } from '../master/lifecycle/child-spec.js';
import { createSupervisor, type Supervisor, type TransitionEvent } from '../master/lifecycle/supervisor.js';
import { createFakeClock, type FakeClock } from '../master/lifecycle/clock.js';
import type { MasterMessage } from '../worker/protocol.js';
import { BotApiEmulator } from '../scripts/emulator/emulator.js';

/** A scripted child: records what the master sent, and says or does what the test tells it. */
class FakeChild implements WorkerProcess {
  static nextPid = 900_000;
  readonly pid = FakeChild.nextPid++;
  readonly sent: MasterMessage[] = [];
  readonly kills: string[] = [];
  readonly raw = new EventEmitter() as unknown as WorkerProcess['raw'];
  readonly exited: Promise<ExitInfo>;
  private resolveExit!: (i: ExitInfo) => void;
  constructor(readonly opts: ForkOptions) {
    this.exited = new Promise((r) => (this.resolveExit = r));
  }
  send(m: MasterMessage): void {
    this.sent.push(m);
    if (m.type === 'shutdown') setImmediate(() => this.exit({ code: 0, signal: null }));
  }
  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    this.kills.push(signal);
    setImmediate(() => this.exit({ code: null, signal }));
  }
  say(m: object): void {
    this.opts.onMessage({ v: 1, ...m });
  }
  exit(i: ExitInfo): void {
    this.resolveExit(i);
  }
}

describe('supervisor with fake children', () => {
  let emulator: BotApiEmulator;
  let apiRoot: string;
  let home: string;
  before(async () => {
    emulator = new BotApiEmulator();
    apiRoot = await emulator.start();
    home = fs.mkdtempSync(path.join(os.tmpdir(), 'botfleet-sup-'));
  });
  after(async () => {
    await emulator.stop();
    fs.rmSync(home, { recursive: true, force: true });
  });

  function build(env: Record<string, string> = {}, clock?: FakeClock): { sup: Supervisor; forks: FakeChild[]; events: TransitionEvent[]; spec: (id: string) => BotSpec } {
    const cfg = loadConfig({}, { BOTFLEET_HOME: home, TELEGRAM_API_ROOT: apiRoot, HEARTBEAT_INTERVAL_MS: '50', HEARTBEAT_TIMEOUT_MS: '400', RESTART_BACKOFF_MS: '20', RESTART_COOLDOWN_MS: '100', MAX_RESTARTS_PER_HOUR: '3', ...env });
    const forks: FakeChild[] = [];
    const events: TransitionEvent[] = [];
    const sup = createSupervisor({
      config: cfg, logger: pino({ level: 'silent' }), cores: 2, logsDir: home, secretTokenFor: () => 'secret', ...(clock ? { clock } : {}),
      fork: (o) => {
        const f = new FakeChild(o);
        forks.push(f);
        return f;
      },
    });
    sup.on('transition', (e: TransitionEvent) => events.push(e));
    const spec = (id: string): BotSpec => ({ id, name: id, token: emulator.createBot(`${id}_bot`).token, mode: 'polling', handler: 'echo', settings: {}, apiRoot: null, enabled: true });
    return { sup, forks, events, spec };
  }

  /** Resolves with the first transition of `botId` into `to`, or fails after `ms`. */
  const reach = (sup: Supervisor, botId: string, to: string, ms = 3000) => new Promise<TransitionEvent>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${botId} did not reach ${to} within ${ms} ms`)), ms);
    const on = (e: TransitionEvent) => {
      if (e.botId === botId && e.to === to) {
        clearTimeout(t);
        sup.off('transition', on);
        resolve(e);
      }
    };
    sup.on('transition', on);
  });
  const forked = async (forks: FakeChild[], n: number, ms = 3000) => {
    const until = Date.now() + ms;
    while (forks.length < n) {
      if (Date.now() > until) throw new Error(`fork ${n} did not happen within ${ms} ms`);
      await new Promise((r) => setTimeout(r, 5));
    }
    return forks[n - 1]!;
  };

  test('configured -> pending (Telegram side) -> starting -> running on ready; init carries the token, never argv', async () => {
    const { sup, forks, events, spec } = build();
    const s = spec('a');
    sup.reconcile([s], []);
    const f = await forked(forks, 1);
    assert.equal(f.sent[0]?.type, 'init');
    assert.equal((f.sent[0] as Extract<MasterMessage, { type: 'init' }>).bot.token, s.token);
    const running = reach(sup, 'a', 'running');
    f.say({ type: 'ready' });
    await running;
    assert.deepEqual(events.filter((e) => e.botId === 'a').map((e) => e.to), ['pending', 'starting', 'running']);
    await sup.stopAll();
  });

  test('a crash goes through backoff to a new fork; the fault after the third restart in the window quarantines', async () => {
    const { sup, forks, spec } = build();
    sup.reconcile([spec('b')], []);
    for (let i = 1; i <= 4; i++) {
      const f = await forked(forks, i);
      const next = reach(sup, 'b', i < 4 ? 'backoff' : 'quarantined');
      f.exit({ code: 1, signal: null });
      await next;
    }
    // backoff -> (timer) -> starting -> a fork each time; then quarantined with a retry time
    const st = sup.status().find((w) => w.botId === 'b')!;
    assert.equal(st.state, 'quarantined');
    assert.equal(st.lastExit?.reason, 'crash');
    assert.ok(st.quarantinedUntil !== null);
    assert.equal(forks.length, 4);
    assert.equal(st.restartsLastHour, 3);
    await sup.stopAll();
  });

  test('no heartbeat within the deadline: SIGKILL with reason hung; a protocol violation: reason protocol', async () => {
    const { sup, forks, spec } = build();
    sup.reconcile([spec('c')], []);
    const f1 = await forked(forks, 1);
    const running = reach(sup, 'c', 'running');
    f1.say({ type: 'ready' });
    await running;
    const back = reach(sup, 'c', 'backoff');
    await back; // the fake never beats: hung after 400 ms
    assert.deepEqual(f1.kills, ['SIGKILL']);
    assert.equal(sup.status()[0]!.lastExit?.reason, 'hung');
    const f2 = await forked(forks, 2);
    const r2 = reach(sup, 'c', 'running');
    f2.say({ type: 'ready' });
    await r2;
    const b2 = reach(sup, 'c', 'backoff');
    f2.say({ type: 'ack', acks: 'not a list' });
    await b2;
    assert.equal(sup.status()[0]!.lastExit?.reason, 'protocol');
    assert.match(sup.status()[0]!.stateReason ?? '', /protocol/);
    await sup.stopAll();
  });

  test('on a fake clock: hung exactly past the heartbeat deadline, backoff delays exact', async () => {
    const clock = createFakeClock(1_000_000);
    const { sup, forks, spec } = build({}, clock);
    sup.reconcile([spec('e')], []);
    const f1 = await forked(forks, 1);
    const r1 = reach(sup, 'e', 'running');
    f1.say({ type: 'ready' });
    await r1;
    // HEARTBEAT_TIMEOUT_MS=400, checked every 100 ms: at 400 ms of silence it is not yet late.
    clock.advance(400);
    assert.deepEqual(f1.kills, [], 'not killed at the deadline itself');
    const backoff = reach(sup, 'e', 'backoff');
    clock.advance(100);
    assert.deepEqual(f1.kills, ['SIGKILL'], 'killed at the first check past it');
    const b1 = await backoff;
    assert.match(b1.reason ?? '', /^hung; restart in 0 ms$/, 'the first fault restarts at once');
    clock.advance(0);
    const f2 = await forked(forks, 2);
    const r2 = reach(sup, 'e', 'running');
    f2.say({ type: 'ready' });
    await r2;
    const b2 = reach(sup, 'e', 'backoff');
    f2.exit({ code: 1, signal: null });
    assert.match((await b2).reason ?? '', /^crash; restart in 20 ms$/, 'the second quick fault waits RESTART_BACKOFF_MS');
    clock.advance(19);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(forks.length, 2, 'no fork before the backoff ends');
    clock.advance(1);
    await forked(forks, 3);
    await sup.stopAll();
  });

  test('an operator restart drains, then forks again: draining -> pending -> starting -> running', async () => {
    const { sup, forks, events, spec } = build();
    sup.reconcile([spec('d')], []);
    const f1 = await forked(forks, 1);
    const r1 = reach(sup, 'd', 'running');
    f1.say({ type: 'ready' });
    await r1;
    const restarting = sup.restart('d');
    const f2 = await forked(forks, 2);
    assert.equal(f1.sent.at(-1)?.type, 'shutdown', 'asked to drain first');
    f2.say({ type: 'ready' });
    const summary = await restarting;
    assert.deepEqual(summary, { restarted: ['d'], skipped: [] });
    assert.deepEqual(events.filter((e) => e.botId === 'd').map((e) => e.to).slice(-4), ['draining', 'pending', 'starting', 'running']);
    assert.equal(sup.status()[0]!.lastExit?.reason, 'operator');
    await sup.stopAll();
  });
});

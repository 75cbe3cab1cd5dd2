/**
 * The supervisor with fake children, a fake Telegram and a fake clock (suture's
 * practice): `fork` is replaced by a scripted child whose messages and exits the test
 * drives, Telegram's side by a function the test answers, and every deadline, backoff
 * and check by a clock that moves only when told. No emulator, no worker, no real timer:
 * waits are on events (with a safety deadline) and on the loop's own turns.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, test } from 'node:test';
import pino from 'pino';
import { fail, ErrorCodes } from '../common/errors.js';
import { loadConfig } from '../config/load.js';
import type { ExitInfo, ForkOptions, WorkerProcess } from '../master/lifecycle/child-process.js';
import type { BotSpec } from '../config/bot-spec.js';
import { READ_EVERY_MS, ROOM_RECHECK_MS } from '../master/lifecycle/policy/memory-room.js';
import { createSupervisor, type RestoredHistory, type Supervisor, type TransitionEvent } from '../master/lifecycle/supervisor.js';
import { createFakeClock, type FakeClock } from '../master/lifecycle/clock.js';
import type { AdminResult, DeliveryRequest } from '../master/lifecycle/telegram-admin.js';
import type { RestartHistory } from '../master/lifecycle/policy/restart.js';
import type { MasterMessage } from '../worker/protocol.js';

/** A scripted child: records what the master sent, and says or does what the test tells it. */
class FakeChild implements WorkerProcess {
  static nextPid = 900_000;
  readonly pid = FakeChild.nextPid++;
  readonly sent: MasterMessage[] = [];
  readonly kills: string[] = [];
  readonly exited: Promise<ExitInfo>;
  /** Ignore `shutdown` (a worker that will not drain). */
  stubborn = false;
  private resolveExit!: (i: ExitInfo) => void;
  constructor(readonly opts: ForkOptions) {
    this.exited = new Promise((r) => (this.resolveExit = r));
  }
  send(m: MasterMessage): void {
    this.sent.push(m);
    if (m.type === 'shutdown' && !this.stubborn) setImmediate(() => this.exit({ code: 0, signal: null }));
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

/** Let the loop run its pending turns (immediates, promise jobs): no timer, no sleep. */
const turns = async (n = 20) => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

interface Harness {
  sup: Supervisor;
  clock: FakeClock;
  forks: FakeChild[];
  events: TransitionEvent[];
  telegram: DeliveryRequest[];
  saved: Array<{ botId: string; history: RestartHistory; doNotRestart: boolean; reason: string | null | undefined }>;
  removed: string[];
  /** Telegram's answer to the next preparations (default: ok). */
  answer: (r: DeliveryRequest) => AdminResult;
  /** Make the next fork throw this instead. */
  forkError: Error | null;
  /** Forks asked for (before the gate); while `forkGate` is set, each fork waits for it (a fork under way). */
  forkCalls: number;
  forkGate: Promise<void> | null;
  /** The cluster member that owns every bot (null: this master). */
  owner: string | null;
  /** New children say `ready` on their own this long (fake ms) after the fork; null: when told. */
  autoReady: number | null;
  /** The machine's available memory the supervisor reads (bytes); null: unknown (no check). */
  memory: number | null;
  spec(id: string, over?: Partial<BotSpec>): BotSpec;
  forked(n: number): Promise<FakeChild>;
  reach(botId: string, to: string): Promise<TransitionEvent>;
  running(botId: string, n: number): Promise<FakeChild>;
  state(botId: string): ReturnType<Supervisor['status']>[number];
}

function build(env: Record<string, string> = {}, histories?: Map<string, RestoredHistory>): Harness {
  const cfg = loadConfig({}, {
    BOTFLEET_HOME: '/nonexistent/botfleet-fake', HEARTBEAT_INTERVAL_MS: '50', HEARTBEAT_TIMEOUT_MS: '400', RESTART_BACKOFF_MS: '20', RESTART_COOLDOWN_MS: '100',
    MAX_RESTARTS_PER_HOUR: '3', STARTUP_TIMEOUT_MS: '1000', WORKER_TIMEOUT_MS: '500', MEMORY_CHECK_INTERVAL_MS: '3600000', ...env,
  });
  const clock = createFakeClock(1_000_000);
  const bus = new EventEmitter();
  const h: Harness = {
    clock, forks: [], events: [], telegram: [], saved: [], removed: [], forkError: null, forkCalls: 0, forkGate: null, owner: null, autoReady: null, memory: null,
    answer: (r) => ({ ok: true, mode: r.mode, note: null }),
    sup: null as unknown as Supervisor,
    spec: (id, over = {}) => ({ id, name: id, token: `${id}:TEST-TOKEN`, mode: 'polling', handler: 'echo', settings: {}, apiRoot: null, enabled: true, ...over }),
    forked: (n) => new Promise((resolve, reject) => {
      if (h.forks.length >= n) return resolve(h.forks[n - 1]!);
      const t = setTimeout(() => reject(new Error(`fork ${n} did not happen (${h.forks.length} forks)`)), 3000);
      const on = () => {
        if (h.forks.length < n) return;
        clearTimeout(t);
        bus.off('fork', on);
        resolve(h.forks[n - 1]!);
      };
      bus.on('fork', on);
    }),
    reach: (botId, to) => new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${botId} did not reach ${to}`)), 3000);
      const on = (e: TransitionEvent) => {
        if (e.botId !== botId || e.to !== to) return;
        clearTimeout(t);
        h.sup.off('transition', on);
        resolve(e);
      };
      h.sup.on('transition', on);
    }),
    async running(botId, n) {
      const f = await h.forked(n);
      const r = h.reach(botId, 'running');
      f.say({ type: 'ready' });
      await r;
      return f;
    },
    state: (botId) => h.sup.status().find((w) => w.botId === botId)!,
  };
  h.sup = createSupervisor({
    config: cfg, logger: pino({ level: 'silent' }), cores: 2, logsDir: '/nonexistent/botfleet-fake', secretTokenFor: () => 'secret', clock,
    telegram: async (r) => {
      h.telegram.push(r);
      return h.answer(r);
    },
    fork: async (o) => {
      h.forkCalls++;
      if (h.forkGate) await h.forkGate;
      if (h.forkError) throw h.forkError;
      const f = new FakeChild(o);
      h.forks.push(f);
      setImmediate(() => {
        if (h.autoReady !== null) clock.setTimeout(() => f.say({ type: 'ready' }), h.autoReady);
        bus.emit('fork');
      });
      return f;
    },
    onHistory: (botId, history, _until, doNotRestart, reason) => h.saved.push({ botId, history, doNotRestart, reason }),
    onRemoved: (botId) => h.removed.push(botId), availableMemory: () => h.memory, ownerOf: () => h.owner,
    ...(histories ? { histories } : {}),
  });
  h.sup.on('transition', (e: TransitionEvent) => h.events.push(e));
  return h;
}

const path = (h: Harness, botId: string) => h.events.filter((e) => e.botId === botId).map((e) => e.to);

/** Configure `id` and hold its fork under way (after the Telegram side). @returns what lets that fork finish */
async function forkUnderWay(h: Harness, id: string): Promise<() => void> {
  let open!: () => void;
  h.forkGate = new Promise((r) => (open = r));
  h.sup.reconcile([h.spec(id)], []);
  for (let i = 0; i < 50 && h.forkCalls === 0; i++) await turns(1);
  assert.equal(h.forkCalls, 1, `the fork of ${id} is under way`);
  return () => {
    h.forkGate = null;
    open();
  };
}

describe('supervisor with fake children, a fake Telegram and a fake clock', () => {
  test('configured -> pending (Telegram side) -> starting -> running on ready; init carries the token, never argv', async () => {
    const h = build();
    const s = h.spec('a');
    h.sup.reconcile([s], []);
    const f = await h.running('a', 1);
    assert.equal(f.sent[0]?.type, 'init');
    assert.equal((f.sent[0] as Extract<MasterMessage, { type: 'init' }>).bot.token, s.token);
    assert.deepEqual(h.telegram.map((r) => [r.botId, r.mode]), [['a', 'polling']], "Telegram's side prepared once, for polling");
    assert.deepEqual(path(h, 'a'), ['pending', 'starting', 'running']);
    await h.sup.stopAll();
  });

  test('crashes go through backoff (0, then 20 ms, exactly) to new forks; the fault after the third restart in the window quarantines', async () => {
    const h = build();
    h.sup.reconcile([h.spec('b')], []);
    const delays = [0, 20, 40];
    for (let i = 1; i <= 4; i++) {
      const f = await h.forked(i);
      const next = h.reach('b', i < 4 ? 'backoff' : 'quarantined');
      f.exit({ code: 1, signal: null });
      await next;
      if (i === 4) break;
      const delay = delays[i - 1]!;
      if (delay > 0) {
        h.clock.advance(delay - 1);
        await turns();
        assert.equal(h.forks.length, i, `no fork 1 ms before the ${delay} ms backoff ends`);
      }
      h.clock.advance(delay > 0 ? 1 : 0);
    }
    const st = h.state('b');
    assert.equal(st.state, 'quarantined');
    assert.equal(st.lastExit?.reason, 'crash');
    assert.ok(st.quarantinedUntil !== null);
    assert.equal(st.restartsLastHour, 3);
    assert.equal(h.saved.filter((x) => x.botId === 'b').length, 4, 'each decision kept in the store');
    await h.sup.stopAll();
  });

  test('hung exactly past the heartbeat deadline; a protocol violation is reason protocol', async () => {
    const h = build();
    h.sup.reconcile([h.spec('e')], []);
    const f1 = await h.running('e', 1);
    // HEARTBEAT_TIMEOUT_MS=400, checked every 100 ms: at 400 ms of silence it is not yet late.
    h.clock.advance(400);
    assert.deepEqual(f1.kills, [], 'not killed at the deadline itself');
    const backoff = h.reach('e', 'backoff');
    h.clock.advance(100);
    assert.deepEqual(f1.kills, ['SIGKILL'], 'killed at the first check past it');
    assert.match((await backoff).reason ?? '', /^hung; restart in 0 ms$/);
    h.clock.advance(0);
    const f2 = await h.running('e', 2);
    const b2 = h.reach('e', 'backoff');
    f2.say({ type: 'ack', acks: 'not a list' });
    assert.match((await b2).reason ?? '', /^protocol: a message that breaks the protocol; restart in 20 ms$/);
    assert.equal(h.state('e').lastExit?.reason, 'protocol');
    await h.sup.stopAll();
  });

  test('no ready within STARTUP_TIMEOUT_MS: killed with reason startup-timeout, not a moment before', async () => {
    const h = build();
    h.sup.reconcile([h.spec('s')], []);
    const f = await h.forked(1);
    h.clock.advance(999);
    await turns();
    assert.deepEqual(f.kills, []);
    const back = h.reach('s', 'backoff');
    h.clock.advance(1);
    await back;
    assert.equal(h.state('s').lastExit?.reason, 'startup-timeout');
    await h.sup.stopAll();
  });

  test('an operator restart drains, then forks again: draining -> starting -> running', async () => {
    const h = build();
    h.sup.reconcile([h.spec('d')], []);
    const f1 = await h.running('d', 1);
    const restarting = h.sup.restart('d');
    const f2 = await h.forked(2);
    assert.equal(f1.sent.at(-1)?.type, 'shutdown', 'asked to drain first');
    f2.say({ type: 'ready' });
    assert.deepEqual(await restarting, { restarted: ['d'], skipped: [] });
    assert.deepEqual(path(h, 'd').slice(-3), ['draining', 'starting', 'running']);
    assert.equal(h.state('d').lastExit?.reason, 'operator');
    assert.equal(h.state('d').restarts, 1);
    await h.sup.stopAll();
  });

  test('a worker that does not drain is SIGKILLed at WORKER_TIMEOUT_MS, and stopAll names it', async () => {
    const h = build();
    h.sup.reconcile([h.spec('k')], []);
    const f = await h.running('k', 1);
    f.stubborn = true;
    const stopping = h.sup.stopAll();
    await turns();
    h.clock.advance(499);
    await turns();
    assert.deepEqual(f.kills, [], 'not before the deadline');
    h.clock.advance(1);
    assert.deepEqual(await stopping, ['k']);
    assert.deepEqual(f.kills, ['SIGKILL']);
    assert.equal(h.state('k').state, 'stopped');
  });

  test('a 401 at setWebhook is a config quarantine: no fork, no budget spent, kept with its reason; restart releases it', async () => {
    const h = build({ WEBHOOK_HOST: 'https://bots.example' });
    h.answer = () => ({ ok: false, tokenRejected: true, message: 'Telegram rejected the token (401 Unauthorized)' });
    h.sup.reconcile([h.spec('t', { mode: 'webhook' })], []);
    await h.reach('t', 'quarantined');
    const st = h.state('t');
    assert.equal(st.stateReason, 'Telegram rejected the token (401 Unauthorized)');
    assert.equal(st.quarantinedUntil, null);
    assert.equal(st.restarts, 0);
    assert.equal(h.forks.length, 0);
    assert.deepEqual(h.saved.at(-1), { botId: 't', history: { restarts: [], consecutive: 0 }, doNotRestart: true, reason: 'Telegram rejected the token (401 Unauthorized)' });
    h.answer = (r) => ({ ok: true, mode: r.mode, note: null });
    const restarting = h.sup.restart('t');
    await h.running('t', 1);
    assert.deepEqual((await restarting).restarted, ['t']);
    await h.sup.stopAll();
  });

  test('a handler the fork path refuses (HANDLER_LOAD) is a config quarantine at once; a host error (EAGAIN) is a crash with backoff', async () => {
    const h = build();
    h.forkError = fail(ErrorCodes.HANDLER_LOAD, 'handler /srv/bots/x.js is not readable by uid 20001');
    h.sup.reconcile([h.spec('h')], []);
    await h.reach('h', 'quarantined');
    assert.equal(h.state('h').stateReason, 'handler /srv/bots/x.js is not readable by uid 20001');
    assert.equal(h.state('h').restarts, 0);
    h.forkError = fail(ErrorCodes.FORK, 'fork failed: spawn setpriv EAGAIN');
    h.sup.reconcile([h.spec('h'), h.spec('g')], []);
    await h.reach('g', 'backoff');
    assert.match(h.state('g').stateReason ?? '', /^fork failed: spawn setpriv EAGAIN; restart in 0 ms$/);
    h.forkError = null;
    h.clock.advance(0);
    await h.running('g', 1);
    await h.sup.stopAll();
  });

  test('a bot disabled while its fork is under way: that worker is killed without an init, and its fork slot goes to the next bot', async () => {
    const h = build({ START_CONCURRENCY: '1' });
    const open = await forkUnderWay(h, 'a');
    h.sup.reconcile([h.spec('a', { enabled: false }), h.spec('b')], []);
    assert.equal(h.state('a').state, 'stopped');
    open();
    const fa = await h.forked(1);
    await turns();
    assert.deepEqual(fa.kills, ['SIGKILL'], 'the stale worker is killed');
    assert.deepEqual(fa.sent, [], 'and gets no init');
    assert.equal(h.state('a').state, 'stopped');
    assert.equal(h.state('a').pid, null);
    const fb = await h.running('b', 2);
    assert.equal(fb.sent[0]?.type, 'init');
    await h.sup.stopAll();
  });

  test('a master stopping while a fork is under way waits for that worker, kills it, and only then resolves', async () => {
    const h = build();
    const open = await forkUnderWay(h, 'a');
    let stopped = false;
    const stopping = h.sup.stopAll().then(() => (stopped = true));
    await turns();
    assert.equal(stopped, false, 'stopAll waits for the spawn under way');
    open();
    await stopping;
    const fa = h.forks[0]!;
    assert.deepEqual(fa.kills, ['SIGKILL'], 'the worker forked meanwhile was killed before stopAll resolved');
    assert.deepEqual(fa.sent, []);
  });

  test('a bot lost to another member while its fork is under way: ownershipChanged resolves only once that worker was killed', async () => {
    const h = build();
    const open = await forkUnderWay(h, 'a');
    h.owner = 'member-b';
    let handedOver = false;
    const handing = h.sup.ownershipChanged('a', 'member-b').then(() => (handedOver = true));
    await turns();
    assert.equal(handedOver, false, 'not handed over while a worker of it may still start here');
    assert.equal(h.state('a').stateReason, 'owned by member-b');
    open();
    await handing;
    assert.deepEqual(h.forks[0]!.kills, ['SIGKILL']);
    assert.deepEqual(h.forks[0]!.sent, [], 'no init: the token never reached it');
    await h.sup.stopAll();
  });

  test('over capacity a bot waits pending; a slot freed by a disabled neighbour starts it', async () => {
    const h = build({ MAX_TOTAL_WORKERS: '1' });
    h.sup.reconcile([h.spec('p1'), h.spec('p2')], []);
    await h.running('p1', 1);
    assert.equal(h.state('p2').state, 'pending');
    assert.equal(h.state('p2').stateReason, 'over capacity (1 workers)');
    h.sup.reconcile([h.spec('p1', { enabled: false }), h.spec('p2')], []);
    await h.running('p2', 2);
    assert.equal(h.state('p1').state, 'stopped');
    assert.equal(h.state('p1').stateReason, 'disabled');
    await h.sup.stopAll();
  });

  test('below the memory reserve a new bot waits pending with the reason (no per-core cap by default), and starts once memory frees', async () => {
    const MB = 1024 * 1024;
    const h = build({ MEMORY_RESERVE_MB: '1024', HEARTBEAT_TIMEOUT_MS: '3600000' }); // m1 sends no heartbeat while the clock moves
    assert.equal(h.sup.capacity(), 1000, 'MAX_TOTAL_WORKERS alone: no per-core cap unless MAX_WORKERS_PER_CORE is set');
    h.memory = 2048 * MB;
    h.sup.reconcile([h.spec('m1')], []);
    await h.running('m1', 1);
    h.memory = 1000 * MB;
    h.clock.advance(READ_EVERY_MS); // past the cached reading
    h.sup.reconcile([h.spec('m1'), h.spec('m2')], []);
    await turns();
    assert.equal(h.state('m2').state, 'pending');
    assert.equal(h.state('m2').stateReason, 'memory reserve: 1000 MB available, 1024 MB kept free (MEMORY_RESERVE_MB)');
    assert.equal(h.forks.length, 1, 'no fork below the reserve');
    h.clock.advance(ROOM_RECHECK_MS);
    await turns();
    assert.equal(h.forks.length, 1, 'tried again, still below it');
    h.memory = 4096 * MB;
    h.clock.advance(ROOM_RECHECK_MS);
    for (let i = 0; i < 20 && h.forks.length < 2; i++) await turns(), h.clock.advance(100); // the fork pacer's spacing runs on the clock
    await h.running('m2', 2);
    await h.sup.stopAll();
  });

  test('a settings change reaches the running worker; a removed bot drains, then is forgotten', async () => {
    const h = build();
    h.sup.reconcile([h.spec('r')], []);
    const f = await h.running('r', 1);
    h.sup.reconcile([h.spec('r', { settings: { greeting: 'hi' } })], []);
    assert.deepEqual(f.sent.at(-1), { v: 1, type: 'settings', settings: { greeting: 'hi' } });
    h.sup.reconcile([], []);
    assert.equal(f.sent.at(-1)?.type, 'shutdown');
    await f.exited;
    await turns();
    assert.deepEqual(h.removed, ['r']);
    assert.deepEqual(h.sup.status(), []);
    await h.sup.stopAll();
  });

  test('a do-not-restart quarantine an earlier master kept comes back with its reason; one on the quota frees itself on time', async () => {
    const histories = new Map<string, RestoredHistory>([
      ['q78', { history: { restarts: [], consecutive: 0 }, quarantinedUntil: null, doNotRestart: true, reason: 'Telegram rejected the token (401 Unauthorized)' }],
      ['qq', { history: { restarts: [999_000, 999_500, 999_900], consecutive: 3 }, quarantinedUntil: 1_000_000 + 5000, doNotRestart: false }],
    ]);
    const h = build({}, histories);
    h.sup.reconcile([h.spec('q78'), h.spec('qq')], []);
    assert.match(h.state('q78').stateReason ?? '', /^Telegram rejected the token \(401 Unauthorized\) \(quarantined before the master restarted/);
    assert.equal(h.state('qq').state, 'quarantined');
    h.clock.advance(4999);
    await turns();
    assert.equal(h.forks.length, 0);
    h.clock.advance(1);
    await h.running('qq', 1);
    assert.equal(h.state('q78').state, 'quarantined', 'only an operator or a fix releases a do-not-restart');
    await h.sup.stopAll();
  });

  test('20 rolling restarts asked for in two seconds: two rolls, each bot restarted at most twice, every transition allowed', async () => {
    const h = build({ HEARTBEAT_TIMEOUT_MS: '600000', HEARTBEAT_INTERVAL_MS: '1000' }); // the fakes never beat
    h.autoReady = 300;
    h.sup.reconcile([h.spec('a'), h.spec('b')], []);
    await h.forked(2);
    h.clock.advance(300);
    await turns();
    assert.deepEqual(h.sup.status().map((w) => w.state), ['running', 'running']);
    const rolls: Array<ReturnType<Supervisor['restart']>> = [];
    for (let i = 0; i < 20; i++) {
      rolls.push(h.sup.restart());
      h.clock.advance(100);
      await turns();
    }
    for (let i = 0; i < 20; i++) { // quiet for ROLL_COALESCE_MS: the trailing roll starts, and its workers get ready
      h.clock.advance(100);
      await turns();
    }
    const summaries = await Promise.all(rolls);
    assert.equal(new Set(summaries).size, 2, 'one leading roll and one trailing roll, every request answered by one of them');
    for (const id of ['a', 'b']) {
      assert.equal(h.state(id).state, 'running');
      assert.equal(h.state(id).restarts, 2, `${id} restarted once per roll`);
    }
    assert.equal(h.forks.length, 6);
    await h.sup.stopAll();
  });
});

/**
 * The lifecycle machine as a table: where the child is x what happens -> where it goes
 * and what the master does (master/lifecycle/step.ts). One row a line, read left to right:
 *
 *   phase[@budget][ (context)] | event | next | effects
 *
 * Phases show as states: waiting and preparing as `pending`, forking as `starting`.
 * Budgets: fresh (default), `one` (one quick restart in the window), `spent` (3 of 3).
 * Context: `full` (no worker slot free), `down` (the master is shutting down).
 * Effects: prepare, fork, release (the fork slot), ask-drain, kill:<why>, arm:+<ms>,
 * save / save:forever (restart history; do not restart), exit:<reason>, deliver, hold
 * (the journal), gone / gone! (in-flight updates; ! = they become suspects), settings, forget.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ALLOWED_TRANSITIONS } from '../master/lifecycle/child.js';
import { newLife, stateOf, type Effect, type Life, type LifeEvent, type Phase, type Proc, type StepRules } from '../master/lifecycle/phase.js';
import type { RestartHistory } from '../master/lifecycle/policy/restart.js';
import { step } from '../master/lifecycle/step.js';

const TABLE = `
stopped                 | configured          | preparing                   | prepare
stopped (full)          | configured          | waiting                     | -
stopped (down)          | configured          | stopped                     | -
stopped (other)         | configured          | stopped                     | -
stopped (other)         | configured 78       | stopped                     | -
stopped                 | configured 78       | quarantined forever         | -
stopped                 | configured quota    | quarantined until +60000    | arm:+60000
stopped                 | changed             | preparing                   | prepare
stopped                 | disabled            | stopped                     | -
stopped                 | removed             | stopped                     | forget
stopped                 | shutdown            | stopped                     | -
stopped                 | ownership-gained    | preparing                   | prepare
stopped                 | timer               | stopped                     | -
stopped                 | exit 1              | stopped                     | -
stopped                 | restart             | stopped                     | -
stopped                 | capacity-free       | stopped                     | -
was-stopped             | changed             | forking                     | fork
was-stopped             | changed material    | preparing                   | prepare
waiting                 | capacity-free       | forking                     | fork
waiting (other)         | capacity-free       | stopped                     | -
waiting                 | changed material    | waiting                     | -
waiting                 | disabled            | stopped                     | -
waiting                 | removed             | stopped                     | forget
waiting                 | shutdown            | stopped                     | -
waiting                 | restart             | forking                     | save fork
waiting                 | timer               | waiting                     | -
waiting                 | ready               | waiting                     | -
preparing               | prepared            | forking                     | fork
preparing               | prepared old        | preparing                   | -
preparing               | prepare-failed      | backoff +0                  | save arm:+0
preparing@one           | prepare-failed      | backoff +1000               | save arm:+1000
preparing@spent         | prepare-failed      | quarantined until +3570000  | save arm:+3570000
preparing               | prepare-failed 401  | quarantined forever         | save:forever
preparing               | changed material    | preparing                   | prepare
preparing               | changed             | preparing                   | -
preparing               | disabled            | stopped                     | -
preparing               | removed             | stopped                     | forget
preparing               | shutdown            | stopped                     | -
preparing               | restart             | preparing                   | -
preparing               | exit 1              | preparing                   | -
forking                 | forked              | starting                    | arm:+10000
forking                 | forked old          | forking                     | kill:operator
forking                 | fork-failed         | backoff +0                  | save arm:+0
forking                 | fork-failed config  | quarantined forever         | save:forever
forking                 | changed material    | preparing                   | prepare
forking                 | disabled            | stopped                     | -
forking                 | removed             | stopped                     | forget
forking                 | timer               | forking                     | -
starting                | ready               | running                     | release deliver
starting                | ready old           | starting                    | -
starting                | timer               | starting                    | kill:startup-timeout
starting/killed         | timer               | starting                    | -
starting                | exit 1              | backoff +0                  | release gone! exit:crash save arm:+0
starting                | exit 78             | quarantined forever         | release gone exit:config save:forever
starting/killed         | SIGKILL             | backoff +0                  | release gone exit:startup-timeout save arm:+0
starting                | disabled            | draining>stop               | ask-drain arm:+30000
starting                | shutdown            | draining>stop               | ask-drain arm:+30000
starting                | changed material    | draining>restart            | ask-drain arm:+30000
starting                | changed settings    | starting                    | -
starting                | memory              | starting                    | kill:memory
starting                | worker-error        | starting                    | -
starting                | heartbeat-overdue   | starting                    | -
starting                | restart             | draining>restart            | ask-drain arm:+30000
running                 | heartbeat-overdue   | running                     | kill:hung
running/killed          | heartbeat-overdue   | running                     | -
running                 | memory              | running                     | kill:memory
running/killed          | memory              | running                     | kill:memory
running                 | disk                | running                     | kill:disk
running                 | protocol            | running                     | kill:protocol
running/killed          | protocol            | running                     | -
running                 | worker-error        | running                     | -
running                 | changed settings    | running                     | settings
running                 | changed             | running                     | -
running                 | changed material    | draining>restart            | hold ask-drain arm:+30000
running                 | disabled            | draining>stop               | hold ask-drain arm:+30000
running                 | removed             | draining>forget             | hold ask-drain arm:+30000
running                 | shutdown            | draining>stop               | hold ask-drain arm:+30000
running                 | ownership-lost      | draining>stop               | hold ask-drain arm:+30000
running                 | restart             | draining>restart            | hold ask-drain arm:+30000
running                 | exit 1              | backoff +0                  | release hold gone! exit:crash save arm:+0
running@one             | exit 1              | backoff +1000               | release hold gone! exit:crash save arm:+1000
running@spent           | exit 1              | quarantined until +3570000  | release hold gone! exit:crash save arm:+3570000
running                 | exit 0              | backoff +0                  | release hold gone! exit:exited save arm:+0
running                 | exit 78             | quarantined forever         | release hold gone exit:config save:forever
running/fatal           | exit 78             | quarantined forever         | release hold gone exit:config:BF_ERR_HANDLER_LOAD save:forever
running                 | SIGKILL             | backoff +0                  | release hold gone! exit:crash save arm:+0
running                 | SIGSEGV             | backoff +0                  | release hold gone! exit:crash save arm:+0
running                 | exit oom            | backoff +0                  | release hold gone! exit:memory save arm:+0
running/killed          | SIGKILL             | backoff +0                  | release hold gone! exit:hung save arm:+0
running/disk            | SIGKILL             | quarantined forever         | release hold gone exit:disk save:forever
running/protocol        | SIGKILL             | backoff +0                  | release hold gone! exit:protocol save arm:+0
running (down)          | exit 1              | stopped                     | release hold gone exit:crash
running                 | exit old            | running                     | -
running                 | ready               | running                     | -
running                 | timer               | running                     | -
running                 | capacity-free       | running                     | -
running                 | prepared            | running                     | -
draining>stop           | exit 0              | stopped                     | release gone exit:operator
draining>stop           | SIGKILL             | stopped                     | release gone exit:operator
draining>stop           | exit oom            | stopped                     | release gone exit:memory
draining>forget         | exit 0              | stopped                     | release gone exit:operator forget
draining>restart        | exit 0              | forking                     | release gone exit:operator fork
draining>restart (full) | exit 0              | waiting                     | release gone exit:operator
draining>stop           | timer               | draining>stop               | kill:drain deadline
draining/killed         | timer               | draining>stop               | -
draining>stop           | memory              | draining>stop               | kill:memory
draining>stop           | protocol            | draining>stop               | kill:protocol
draining>stop           | heartbeat-overdue   | draining>stop               | -
draining>stop           | changed             | draining>restart            | -
draining>forget         | changed             | draining>restart            | -
draining>stop           | ownership-gained    | draining>restart            | -
draining>forget         | ownership-gained    | draining>forget             | -
draining>stop           | restart             | draining>restart            | -
draining>forget         | restart             | draining>forget             | -
draining>restart        | disabled            | draining>stop               | -
draining>restart        | removed             | draining>forget             | -
draining>forget         | disabled            | draining>forget             | -
draining>restart        | shutdown            | draining>stop               | -
backoff                 | timer               | forking                     | fork
backoff (other)         | timer               | stopped                     | -
backoff (down)          | timer               | stopped                     | -
backoff                 | restart             | forking                     | save fork
backoff                 | disabled            | stopped                     | -
backoff                 | removed             | stopped                     | forget
backoff                 | shutdown            | stopped                     | -
backoff                 | changed material    | backoff +1000               | -
backoff                 | exit 1              | backoff +1000               | -
backoff                 | capacity-free       | backoff +1000               | -
quarantined             | timer               | forking                     | fork
quarantined (full)      | timer               | waiting                     | -
quarantined/78          | timer               | quarantined forever         | -
quarantined             | restart             | forking                     | save fork
quarantined (other)     | restart             | stopped                     | save
quarantined/78          | restart             | forking                     | save fork
quarantined/78          | changed material    | preparing                   | save prepare
quarantined/78          | changed             | quarantined forever         | -
quarantined             | disabled            | stopped                     | -
quarantined             | removed             | stopped                     | forget
quarantined             | shutdown            | stopped                     | -
quarantined             | ownership-lost      | stopped                     | -
`;

const NOW = 10_000_000;
const PID = 4242;
const proc = (p: Partial<Proc> = {}): Proc => ({ pid: PID, startedAt: NOW - 1000, killedFor: null, fatal: null, detail: null, ...p });

const PHASES: Record<string, Phase> = {
  stopped: { tag: 'stopped', why: null },
  'was-stopped': { tag: 'stopped', why: 'disabled' },
  waiting: { tag: 'waiting', why: 'over capacity (2 workers)' },
  preparing: { tag: 'preparing', attempt: 1, why: 'configured' },
  forking: { tag: 'forking', attempt: 1, why: 'configured' },
  starting: { tag: 'starting', proc: proc(), why: 'configured' },
  'starting/killed': { tag: 'starting', proc: proc({ killedFor: 'startup-timeout' }), why: 'configured' },
  running: { tag: 'running', proc: proc() },
  'running/killed': { tag: 'running', proc: proc({ killedFor: 'hung' }) },
  'running/fatal': { tag: 'running', proc: proc({ fatal: { message: 'the handler refuses to load', code: 'BF_ERR_HANDLER_LOAD' } }) },
  'running/disk': { tag: 'running', proc: proc({ killedFor: 'disk', fatal: { message: 'over MAX_DATA_PER_BOT_MB', code: null } }) },
  'running/protocol': { tag: 'running', proc: proc({ killedFor: 'protocol', detail: 'a message that is not JSON' }) },
  'draining>stop': { tag: 'draining', proc: proc({ killedFor: 'operator' }), then: 'stop', why: 'disabled', killed: false },
  'draining>restart': { tag: 'draining', proc: proc({ killedFor: 'operator' }), then: 'restart', why: 'operator', killed: false },
  'draining>forget': { tag: 'draining', proc: proc({ killedFor: 'operator' }), then: 'forget', why: 'removed', killed: false },
  'draining/killed': { tag: 'draining', proc: proc({ killedFor: 'operator' }), then: 'stop', why: 'disabled', killed: true },
  backoff: { tag: 'backoff', until: NOW + 1000, why: 'crash; restart in 1000 ms', cause: 'crash' },
  quarantined: { tag: 'quarantined', until: NOW + 1000, why: '3 restarts within 3600 s' },
  'quarantined/78': { tag: 'quarantined', until: null, why: 'the handler refuses to load' },
};

const BUDGETS: Record<string, RestartHistory> = {
  fresh: { restarts: [], consecutive: 0 },
  one: { restarts: [NOW - 5000], consecutive: 1 },
  spent: { restarts: [NOW - 30_000, NOW - 20_000, NOW - 10_000], consecutive: 3 },
};

const EVENTS: Record<string, LifeEvent> = {
  configured: { type: 'configured', restored: null },
  'configured 78': { type: 'configured', restored: { history: BUDGETS.fresh!, quarantinedUntil: null, doNotRestart: true, reason: 'Telegram rejected the token (401 Unauthorized)' } },
  'configured quota': { type: 'configured', restored: { history: BUDGETS.spent!, quarantinedUntil: NOW + 60_000, doNotRestart: false } },
  changed: { type: 'changed', material: false, settings: false },
  'changed material': { type: 'changed', material: true, settings: false },
  'changed settings': { type: 'changed', material: false, settings: true },
  disabled: { type: 'disabled', why: 'disabled', reason: 'operator' },
  removed: { type: 'removed' },
  shutdown: { type: 'shutdown' },
  'ownership-gained': { type: 'ownership-gained', restored: null },
  'ownership-lost': { type: 'ownership-lost', owner: 'member-b' },
  'capacity-free': { type: 'capacity-free' },
  prepared: { type: 'prepared', attempt: 1, mode: 'polling', note: null },
  'prepared old': { type: 'prepared', attempt: 0, mode: 'polling', note: null },
  'prepare-failed': { type: 'prepare-failed', attempt: 1, message: 'setWebhook failed: 502', tokenRejected: false },
  'prepare-failed 401': { type: 'prepare-failed', attempt: 1, message: 'Telegram rejected the token (401 Unauthorized)', tokenRejected: true },
  forked: { type: 'forked', attempt: 1, pid: PID },
  'forked old': { type: 'forked', attempt: 0, pid: PID + 1 },
  'fork-failed': { type: 'fork-failed', attempt: 1, message: 'fork failed: spawn setpriv EAGAIN', config: false },
  'fork-failed config': { type: 'fork-failed', attempt: 1, message: 'handler not readable by uid 20001', config: true },
  ready: { type: 'ready', pid: PID },
  'ready old': { type: 'ready', pid: PID - 1 },
  'worker-error': { type: 'worker-error', pid: PID, message: 'boom', code: 'BF_ERR_WORKER_FATAL' },
  'heartbeat-overdue': { type: 'heartbeat-overdue', pid: PID },
  memory: { type: 'memory-over-cap', pid: PID },
  disk: { type: 'disk-over-cap', pid: PID, message: 'over MAX_DATA_PER_BOT_MB' },
  protocol: { type: 'protocol-violation', pid: PID, detail: 'a message that is not JSON' },
  'exit 0': { type: 'exit', pid: PID, code: 0, signal: null, oom: false },
  'exit 1': { type: 'exit', pid: PID, code: 1, signal: null, oom: false },
  'exit 78': { type: 'exit', pid: PID, code: 78, signal: null, oom: false },
  SIGKILL: { type: 'exit', pid: PID, code: null, signal: 'SIGKILL', oom: false },
  SIGSEGV: { type: 'exit', pid: PID, code: null, signal: 'SIGSEGV', oom: false },
  'exit oom': { type: 'exit', pid: PID, code: null, signal: 'SIGKILL', oom: true },
  'exit old': { type: 'exit', pid: PID - 1, code: 1, signal: null, oom: false },
  timer: { type: 'timer' },
  restart: { type: 'restart', reason: 'operator' },
};

function rules(ctx: string | undefined): StepRules {
  return {
    policy: { maxRestarts: 3, periodMs: 3_600_000, baseMs: 1000, capMs: 45_000, healthyRunMs: 300_000 }, capacity: 2,
    slotFree: ctx !== 'full', shuttingDown: ctx === 'down', owner: ctx === 'other' ? 'member-b' : null, startupTimeoutMs: 10_000, drainTimeoutMs: 30_000,
  };
}

function lifeOf(name: string, budget: string): Life {
  const phase = PHASES[name];
  assert.ok(phase, `no phase fixture "${name}"`);
  return { ...newLife(BUDGETS[budget]!), phase, needsPrepare: name === 'stopped', attempt: 1 };
}

const showPhase = (p: Phase): string => {
  switch (p.tag) {
    case 'draining': return `draining>${p.then}`;
    case 'backoff': return `backoff +${p.until - NOW}`;
    case 'quarantined': return p.until === null ? 'quarantined forever' : `quarantined until +${p.until - NOW}`;
    default: return p.tag;
  }
};

const showEffect = (e: Effect): string => {
  switch (e.type) {
    case 'release-slot': return 'release';
    case 'kill': return `kill:${e.reason}`;
    case 'arm': return `arm:+${e.at - NOW}`;
    case 'save-history': return e.doNotRestart ? 'save:forever' : 'save';
    case 'record-exit': return `exit:${e.exit.reason}${e.exit.errorCode ? `:${e.exit.errorCode}` : ''}`;
    case 'worker-gone': return e.suspects ? 'gone!' : 'gone';
    case 'send-settings': return 'settings';
    default: return e.type;
  }
};

const rows = TABLE.trim().split('\n').map((line) => {
  const [where, event, next, effects] = line.split('|').map((s) => s.trim());
  const m = /^([^@ ]+)(?:@(\w+))?(?: \((\w+)\))?$/.exec(where!)!;
  return { line, phase: m[1]!, budget: m[2] ?? 'fresh', ctx: m[3], event: event!, next: next!, effects: effects! };
});

test('the lifecycle table: every row of state x event -> next + effects holds', () => {
  assert.ok(rows.length >= 100, `${rows.length} rows`);
  const wrong: string[] = [];
  for (const r of rows) {
    const e = EVENTS[r.event];
    assert.ok(e, `no event fixture "${r.event}"`);
    const s = step(lifeOf(r.phase, r.budget), e, NOW, rules(r.ctx));
    const got = `${showPhase(s.next.phase)} | ${s.effects.map(showEffect).join(' ') || '-'}`;
    if (got !== `${r.next} | ${r.effects}`) wrong.push(`${r.line}\n    got: ${got}`);
  }
  assert.deepEqual(wrong, []);
});

test('every change of shown state the table makes is an allowed transition', () => {
  for (const r of rows) {
    const before = lifeOf(r.phase, r.budget);
    const s = step(before, EVENTS[r.event]!, NOW, rules(r.ctx));
    const from = stateOf(before.phase);
    const to = stateOf(s.next.phase);
    if (from !== to) assert.ok(ALLOWED_TRANSITIONS[from].includes(to), `${r.line}: ${from} -> ${to}`);
  }
});

test('the step is pure: its input is not changed, and the same input gives the same output', () => {
  for (const r of rows) {
    const before = lifeOf(r.phase, r.budget);
    const frozen = JSON.stringify(before);
    const a = step(before, EVENTS[r.event]!, NOW, rules(r.ctx));
    const b = step(before, EVENTS[r.event]!, NOW, rules(r.ctx));
    assert.equal(JSON.stringify(before), frozen, r.line);
    assert.deepEqual(a, b, r.line);
  }
});

test('what the table does not show: reasons, restart counts, the mode, the kept reason of a do-not-restart', () => {
  const run = (phase: string, event: string, budget = 'fresh') => step(lifeOf(phase, budget), EVENTS[event]!, NOW, rules(undefined));
  const crash = run('running@one'.split('@')[0]!, 'exit 1', 'one');
  assert.equal(crash.next.restarts, 1, 'a backoff counts as a restart');
  assert.equal((crash.next.phase as { why: string }).why, 'crash; restart in 1000 ms');
  assert.equal((run('running/protocol', 'SIGKILL').next.phase as { why: string }).why, 'protocol: a message that is not JSON; restart in 0 ms');
  assert.equal((run('running/fatal', 'exit 78').next.phase as { why: string }).why, 'the handler refuses to load', "the worker's last words");
  const token = run('preparing', 'prepare-failed 401');
  assert.deepEqual(token.effects[0], { type: 'save-history', history: BUDGETS.fresh, quarantinedUntil: null, doNotRestart: true, reason: 'Telegram rejected the token (401 Unauthorized)' }, 'kept with its reason, no budget spent');
  assert.equal(run('draining>restart', 'exit 0').next.restarts, 1, 'a restart the master asked for counts');
  const prepared = run('preparing', 'prepared');
  assert.equal(prepared.next.mode, 'polling');
  assert.equal(prepared.next.needsPrepare, false);
  assert.equal(run('stopped', 'configured 78').next.phase.tag, 'quarantined');
  assert.match((run('stopped', 'configured 78').next.phase as { why: string }).why, /^Telegram rejected the token .*before the master restarted/);
  assert.equal(run('forking', 'changed material').next.attempt, 2, 'a new attempt: the old fork is abandoned');
});

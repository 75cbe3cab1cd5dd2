/**
 * The exit truth table, golden: every (state, intent, shutting down, why the master
 * ended it, how it exited, restart budget) row of `stepExit`, checked against
 * `test/golden/exit-table.json`. A change of lifecycle behaviour is a diff of that
 * file: regenerate it with `UPDATE_GOLDEN=1 node --test dist/test/lifecycle-step.test.js`
 * and review. The allowed transitions are checked against what the table produces.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ALLOWED_TRANSITIONS, type ChildState, type ExitReason, type Intent } from '../master/lifecycle/child.js';
import { stepExit, type ExitInfo } from '../master/lifecycle/step.js';
import type { RestartHistory, RestartPolicy } from '../master/lifecycle/policy/restart.js';

const GOLDEN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'test', 'golden', 'exit-table.json');
const POLICY: RestartPolicy = { maxRestarts: 3, periodMs: 3_600_000, baseMs: 1000, capMs: 45_000, healthyRunMs: 300_000 };
const NOW = 10_000_000;

const STATES: ChildState[] = ['starting', 'running', 'draining'];
const INTENTS: Intent[] = ['run', 'stop', 'restart'];
const END_REASONS: Array<ExitReason | null> = [null, 'hung', 'memory', 'disk', 'startup-timeout', 'protocol', 'operator', 'rolling-restart', 'config-change'];
const EXITS: Array<[string, ExitInfo]> = [['exit 0', { code: 0, signal: null }], ['exit 1', { code: 1, signal: null }], ['exit 78', { code: 78, signal: null }], ['SIGKILL', { code: null, signal: 'SIGKILL' }], ['SIGSEGV', { code: null, signal: 'SIGSEGV' }]];
const BUDGETS: Array<[string, RestartHistory, number]> = [
  ['fresh', { restarts: [], consecutive: 0 }, 60_000],
  ['second quick failure', { restarts: [NOW - 5000], consecutive: 1 }, 1000],
  ['quota spent', { restarts: [NOW - 30_000, NOW - 20_000, NOW - 10_000], consecutive: 3 }, 1000],
];

/** Every row: key -> "next state · recorded reason · what follows". */
function table(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const state of STATES) for (const intent of INTENTS) for (const shuttingDown of [false, true]) for (const endReason of END_REASONS) for (const [exitName, info] of EXITS) for (const [budget, history, ranMs] of BUDGETS) {
    const st = stepExit({ state, intent, shuttingDown, endReason, history, ranMs, fatalMessage: null, protocolDetail: 'x' }, info, NOW, POLICY, 'kept');
    const follow = st.effects.map((e) => e.type === 'launch' ? 'launch now' : e.type === 'arm-restart' ? `restart in ${e.delayMs} ms` : e.type === 'arm-quarantine-end' ? `retry at +${e.until - NOW} ms` : e.doNotRestart ? 'kept: do not restart' : 'kept').join(', ') || 'nothing';
    out[[state, intent, shuttingDown ? 'shutting down' : 'up', endReason ?? 'on its own', exitName, budget].join(' | ')] = [st.to, st.reason, follow, st.suspects ? 'in-flight become suspects' : 'no suspects'].join(' · ');
  }
  return out;
}

test('the exit truth table matches the golden file, row for row', () => {
  const now = table();
  if (process.env.UPDATE_GOLDEN === '1') fs.writeFileSync(GOLDEN, JSON.stringify(now, null, 1) + '\n');
  const golden = JSON.parse(fs.readFileSync(GOLDEN, 'utf8')) as Record<string, string>;
  assert.deepEqual(Object.keys(now).length, STATES.length * INTENTS.length * 2 * END_REASONS.length * EXITS.length * BUDGETS.length);
  assert.deepEqual(now, golden);
});

test('the table keeps the contract: stop wins, 78 is config, unasked 0 is exited, faults spend the budget; config and disk do not restart', () => {
  const t = table();
  for (const [k, v] of Object.entries(t)) {
    const [, intent, up, end, exit, budget] = k.split(' | ');
    const [to, reason] = v.split(' · ');
    if (intent === 'stop' || up === 'shutting down') assert.equal(to, 'stopped', k);
    if (end === 'on its own' && exit === 'exit 78') assert.equal(reason, 'config', k);
    if (end === 'on its own' && exit === 'exit 0') assert.equal(reason, 'exited', k);
    if (end !== 'on its own') assert.equal(reason, end, `${k}: the master's reason is recorded`);
    if (intent === 'run' && up === 'up') {
      if (reason === 'config' || reason === 'disk') assert.match(v, new RegExp(`quarantined · ${reason} · kept: do not restart`), k);
      else if (budget === 'quota spent') assert.match(v, /^quarantined/, k);
      else assert.match(v, /^backoff/, k);
    }
    if (intent === 'restart' && up === 'up') assert.match(v, /^pending · .* · launch now/, k);
  }
});

test('every transition the table produces is an allowed one', (t) => {
  const produced = new Set<string>();
  for (const [k, v] of Object.entries(table())) produced.add(`${k.split(' | ')[0]} -> ${v.split(' · ')[0]}`);
  for (const pair of produced) {
    const [from, to] = pair.split(' -> ') as [ChildState, ChildState];
    assert.ok(ALLOWED_TRANSITIONS[from].includes(to), `${pair} is produced but not allowed`);
  }
  const unused = STATES.flatMap((from) => ALLOWED_TRANSITIONS[from].map((to) => `${from} -> ${to}`)).filter((p) => !produced.has(p));
  // Allowed for other events (ready, stop before a fork, capacity): shown, so a pair nothing produces is visible.
  t.diagnostic(`allowed from these states but produced by no exit: ${unused.join(', ')}`);
});

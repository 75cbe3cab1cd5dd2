/**
 * Rolling restarts (SIGUSR2, `botfleet restart`): batches of ROLLING_RESTART_PERCENT
 * of the fleet, each waiting for its replacements to settle; quarantined and stopped
 * bots are skipped, never waited for (DESIGN.md); requests while one runs are
 * coalesced. The supervisor gives it a way to restart one bot and its transition events.
 */
import type { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { Child, ChildState } from './child.js';
import { realClock, type Clock, type Timer } from './clock.js';

/** Quiet time after the last rolling-restart request before the coalesced trailing roll starts. */
export const ROLL_COALESCE_MS = 1000;

/** The outcome of a restart: bots back `running`, and the others with the state they settled in. */
export interface RollSummary { restarted: string[]; skipped: Array<{ botId: string; why: string }> }

/** What a roll needs from the supervisor. `events` emits `transition` ({ botId, to }). */
export interface RollerDeps {
  bots(): Child[];
  /** Restart one bot for the roll (an event of the machine). */
  restartOne(c: Child): void;
  events: EventEmitter;
  logger: Logger;
  /** How long one bot may take to settle after its restart (ms). */
  settleMs: number;
  rollingRestartPercent: number;
  /** Timers (default: Node's). */
  clock?: Clock;
}

/** The roller: `request` a roll, wait for one bot to `settle`, `cancel` a pending trailing roll. */
export interface Roller {
  request(): Promise<RollSummary>;
  settled(c: Child): Promise<ChildState | 'timeout'>;
  cancel(): void;
}

/** States a restarted bot is not waited past: running, or not going to run soon. */
const SETTLED: readonly ChildState[] = ['running', 'quarantined', 'stopped', 'backoff'];

/**
 * Resolves with `c`'s state once it is running again, or in a state that will not
 * become running soon (quarantined, stopped, backoff), or with `timeout` after `settleMs`.
 * The current state counts: a bot already there is not waited for.
 */
function settledState(d: RollerDeps, clock: Clock, c: Child): Promise<ChildState | 'timeout'> {
  return new Promise((resolve) => {
    if (SETTLED.includes(c.state)) return resolve(c.state);
    const done = (r: ChildState | 'timeout') => {
      clock.clearTimeout(t);
      d.events.off('transition', on);
      resolve(r);
    };
    const on = (e: { botId: string; to: ChildState }) => {
      if (e.botId === c.botId && SETTLED.includes(e.to)) done(e.to);
    };
    const t = clock.setTimeout(() => done('timeout'), d.settleMs);
    d.events.on('transition', on);
  });
}

/** The roller of one supervisor; it changes no child itself (restartOne does). */
export function createRoller(d: RollerDeps): Roller {
  const clock = d.clock ?? realClock;
  const settled = (c: Child) => settledState(d, clock, c);

  /** One rolling restart: batches of ROLLING_RESTART_PERCENT, each waiting for its replacements to settle. */
  async function roll(): Promise<RollSummary> {
    const summary: RollSummary = { restarted: [], skipped: [] };
    const list = d.bots();
    const batch = Math.max(1, Math.floor((list.length * d.rollingRestartPercent) / 100));
    for (let i = 0; i < list.length; i += batch) {
      await Promise.all(list.slice(i, i + batch).map(async (c) => {
        if (c.state === 'quarantined' || c.state === 'stopped') return void summary.skipped.push({ botId: c.botId, why: c.state });
        d.restartOne(c);
        const st = await settled(c);
        if (st === 'running') summary.restarted.push(c.botId);
        else summary.skipped.push({ botId: c.botId, why: st });
      }));
    }
    d.logger.info({ restarted: summary.restarted.length, skipped: summary.skipped }, 'rolling restart done');
    return summary;
  }

  let rolling: Promise<RollSummary> | null = null;
  let trailing: { promise: Promise<RollSummary>; fire(): void; timer: Timer } | null = null;
  /**
   * Leading and trailing coalescing: a request with no roll running starts one at once;
   * requests while one runs become a single trailing roll, started once no request
   * has come for ROLL_COALESCE_MS and the running roll is done (it picks up whatever
   * the later requests were for). 20 SIGUSR2 in two seconds: two rolls.
   */
  function request(): Promise<RollSummary> {
    if (!rolling && !trailing) return (rolling = roll().finally(() => (rolling = null)));
    if (trailing) {
      clock.clearTimeout(trailing.timer);
      trailing.timer = clock.setTimeout(trailing.fire, ROLL_COALESCE_MS);
      return trailing.promise;
    }
    let fire!: () => void;
    const promise = new Promise<void>((r) => (fire = r)).then(async () => {
      await rolling?.catch(() => undefined);
      trailing = null;
      return (rolling = roll().finally(() => (rolling = null)));
    });
    trailing = { promise, fire, timer: clock.setTimeout(fire, ROLL_COALESCE_MS) };
    return promise;
  }

  return {
    request,
    settled,
    cancel() {
      if (trailing) clock.clearTimeout(trailing.timer);
    },
  };
}

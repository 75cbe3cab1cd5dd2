/**
 * What one master does about ownership at one look at the cluster (pure: rows in, actions
 * out; master/cluster/cluster.ts reads the rows and carries the actions out). The rules:
 * - a bot's desired owner is the live member rendezvous hashing picks (rendezvous.ts);
 * - a master takes a bot only when it is the desired owner and the bot has no owner, or its
 *   owner is dead (its member row expired, or it holds another epoch: it restarted), or it
 *   was released; it never takes a bot from a live owner (Kubernetes' lease rule);
 * - a master that owns a bot another member should own releases it: drained first, then the
 *   row freed, one bot at a time (a join never moves every bot at once);
 * - a bot this master ran whose row now names someone else was taken from it (it was seen
 *   as dead): it stops at once.
 */
import { desiredOwner } from './rendezvous.js';

/** A live member: its id and the epoch of its current start. */
export interface Member { id: string; epoch: number }

/** A bot's owner row; `member` '' when released. */
export interface OwnerRow { bot: string; member: string; memberEpoch: number; botEpoch: number }

/** One action. `take`'s `from` is the row to replace (null: none yet): the update is conditional on it. */
/** Why a bot is taken: it never had an owner, its owner released it, or its owner is dead (lease expired, or an older epoch). */
export const TAKE_CAUSES = ['unowned', 'released', 'owner-dead'] as const;
export type TakeCause = (typeof TAKE_CAUSES)[number];

export type OwnershipAction =
  | { type: 'take'; bot: string; from: OwnerRow | null; cause: TakeCause }
  | { type: 'release'; bot: string; to: string }
  | { type: 'lost'; bot: string; owner: string };

/** The look: who this master is, the live members, the owner rows, the bots to own, what it runs and releases now. */
export interface ClusterView {
  me: Member;
  live: readonly Member[];
  rows: ReadonlyMap<string, OwnerRow>;
  bots: readonly string[];
  /** Bots this master runs as owner (with the bot epoch it took them at). */
  owned: ReadonlyMap<string, number>;
  /** A release under way (at most one at a time). */
  releasing: string | null;
}

/** Whether `row` names a live member in the epoch it holds. */
const ownerLive = (row: OwnerRow, live: readonly Member[]) => live.some((m) => m.id === row.member && m.epoch === row.memberEpoch);

/** The actions of one look: takes, at most one release (none while one is under way), losses. */
export function planOwnership(v: ClusterView): OwnershipAction[] {
  const actions: OwnershipAction[] = [];
  const ids = v.live.map((m) => m.id);
  let releasing = v.releasing !== null;
  for (const bot of v.bots) {
    const row = v.rows.get(bot) ?? null;
    const mine = row !== null && row.member === v.me.id && row.memberEpoch === v.me.epoch;
    if (v.owned.has(bot) && !mine) {
      actions.push({ type: 'lost', bot, owner: row?.member || 'nobody' });
      continue;
    }
    const desired = desiredOwner(bot, ids);
    if (mine) {
      if (desired !== null && desired !== v.me.id && !releasing && bot !== v.releasing) {
        actions.push({ type: 'release', bot, to: desired });
        releasing = true;
      }
      continue;
    }
    if (desired !== v.me.id) continue;
    if (row === null) actions.push({ type: 'take', bot, from: null, cause: 'unowned' });
    else if (row.member === '') actions.push({ type: 'take', bot, from: row, cause: 'released' });
    else if (!ownerLive(row, v.live)) actions.push({ type: 'take', bot, from: row, cause: 'owner-dead' });
  }
  return actions;
}

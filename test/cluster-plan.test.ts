/** The cluster's pure rules: rendezvous hashing (rendezvous.ts) and one look's ownership plan (plan.ts). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { desiredOwner } from '../master/cluster/rendezvous.js';
import { planOwnership, type ClusterView, type OwnerRow } from '../master/cluster/plan.js';

const BOTS = Array.from({ length: 1000 }, (_, i) => `bot${i}`);

test('rendezvous: the same members give the same owner in any order; a leaving member moves only its bots; a joining one takes about 1/N', () => {
  const three = ['a', 'b', 'c'];
  for (const b of BOTS.slice(0, 50)) assert.equal(desiredOwner(b, three), desiredOwner(b, ['c', 'a', 'b']));
  assert.equal(desiredOwner('x', []), null);
  const before = new Map(BOTS.map((b) => [b, desiredOwner(b, three)]));
  const perMember = three.map((m) => BOTS.filter((b) => before.get(b) === m).length);
  assert.ok(perMember.every((n) => n > 250 && n < 420), `even spread: ${perMember}`);
  for (const b of BOTS) {
    const after = desiredOwner(b, ['a', 'c']);
    if (before.get(b) !== 'b') assert.equal(after, before.get(b), `${b} stays where it was when b leaves`);
  }
  const moved = BOTS.filter((b) => desiredOwner(b, [...three, 'd']) !== before.get(b));
  assert.ok(moved.every((b) => desiredOwner(b, [...three, 'd']) === 'd'), 'a join moves bots only to the new member');
  assert.ok(moved.length > 200 && moved.length < 300, `about a quarter moves: ${moved.length}`);
});

const row = (bot: string, member: string, memberEpoch: number, botEpoch = 1): OwnerRow => ({ bot, member, memberEpoch, botEpoch });

function view(o: Partial<ClusterView> & { bots: string[] }): ClusterView {
  return { me: { id: 'a', epoch: 5 }, live: [{ id: 'a', epoch: 5 }, { id: 'b', epoch: 7 }], rows: new Map(), owned: new Map(), releasing: null, ...o };
}

test('plan: takes a bot it should own only when unowned, released or its owner is dead (expired, or another epoch); never from a live owner', () => {
  const mine = BOTS.filter((b) => desiredOwner(b, ['a', 'b']) === 'a').slice(0, 5);
  const [unowned, released, expired, oldEpoch, liveOther] = mine as [string, string, string, string, string];
  const rows = new Map([
    [released, row(released, '', 0, 3)], [expired, row(expired, 'c', 9)], [oldEpoch, row(oldEpoch, 'a', 4)], [liveOther, row(liveOther, 'b', 7)],
  ]);
  const actions = planOwnership(view({ bots: mine, rows }));
  assert.deepEqual(actions, [
    { type: 'take', bot: unowned, from: null, cause: 'unowned' },
    { type: 'take', bot: released, from: rows.get(released), cause: 'released' },
    { type: 'take', bot: expired, from: rows.get(expired), cause: 'owner-dead' },
    { type: 'take', bot: oldEpoch, from: rows.get(oldEpoch), cause: 'owner-dead' },
  ], 'the live owner b keeps its bot until it releases it');
  const theirs = BOTS.find((b) => desiredOwner(b, ['a', 'b']) === 'b')!;
  assert.deepEqual(planOwnership(view({ bots: [theirs] })), [], "another member's bot, unowned: left to it");
});

test('plan: releases what another member should own one at a time; a bot taken from it is lost at once', () => {
  const theirs = BOTS.filter((b) => desiredOwner(b, ['a', 'b']) === 'b').slice(0, 3);
  const rows = new Map(theirs.map((b) => [b, row(b, 'a', 5)]));
  const owned = new Map(theirs.map((b) => [b, 1]));
  assert.deepEqual(planOwnership(view({ bots: theirs, rows, owned })), [{ type: 'release', bot: theirs[0], to: 'b' }], 'one release per look');
  assert.deepEqual(planOwnership(view({ bots: theirs, rows, owned, releasing: theirs[0]! })), [], 'none while one is under way');
  const taken = new Map(rows).set(theirs[1]!, row(theirs[1]!, 'b', 7, 2));
  const actions = planOwnership(view({ bots: theirs, rows: taken, owned, releasing: theirs[0]! }));
  assert.deepEqual(actions, [{ type: 'lost', bot: theirs[1], owner: 'b' }]);
});

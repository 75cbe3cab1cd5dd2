/**
 * Rendezvous (highest random weight) hashing, Thaler and Ravishankar 1996: each bot goes to
 * the member with the highest score(member, bot). A member that leaves moves only its own
 * bots, each to the member that scored second; a member that joins takes about 1/N of the
 * bots, from every member alike. Pure; the score is the first 8 bytes of SHA-256, ties
 * broken by member id, so every master computes the same owner from the same members.
 */
import crypto from 'node:crypto';

/** The score of `member` for `bot`: a 64-bit number from SHA-256 of both (big-endian). */
export function score(member: string, bot: string): bigint {
  return crypto.createHash('sha256').update(member).update('\u0000').update(bot).digest().readBigUInt64BE(0);
}

/** The member that should own `bot` among `members` (ids), or null when there are none. */
export function desiredOwner(bot: string, members: readonly string[]): string | null {
  let best: string | null = null;
  let bestScore = -1n;
  for (const m of members) {
    const s = score(m, bot);
    if (s > bestScore || (s === bestScore && best !== null && m < best)) {
      best = m;
      bestScore = s;
    }
  }
  return best;
}

/**
 * Poison updates, one tracker for both modes (DESIGN.md, "Poison updates": probation
 * instead of blame). A worker death blames no update by itself: the updates in flight at
 * a death nobody explains (a crash, an unasked exit, a protocol violation) become
 * *suspects* (lifecycle/step.ts's SUSPECT_DEATHS: also a hang and the memory cap, which an
 * update can cause), and the next worker gets the suspects one at a time before the rest of the
 * window. An update is dead-lettered only when a worker died while it was the only one in
 * flight, {@link MAX_SOLO_DEATHS} times (twice: one may be a coincidence, such as a
 * SIGKILL from outside). A death the master causes for reasons of its own (a rolling
 * restart, an operator, a shutdown, the data cap) makes no suspect at all.
 *
 * Sidekiq's super_fetch and SQS's receive count blame every message in flight: right for
 * one job per worker, wrong for a window of 64, where two kills from outside sent every
 * innocent update of the window to the dead-letter queue. Pure: no I/O.
 */

/** Solo deaths (the only update in flight when its worker died) that make an update poison. */
export const MAX_SOLO_DEATHS = 2;

/** One bot's suspects and their solo deaths. */
export interface PoisonState {
  /** In flight at an unexplained death, not settled since: sent one at a time (probation). */
  suspects: Set<number>;
  /** update_id -> deaths while it was the only update in flight. */
  soloDeaths: Map<number, number>;
}

/** Nothing suspected. */
export const newPoisonState = (): PoisonState => ({ suspects: new Set(), soloDeaths: new Map() });

/** What a death changed: updates now poison (to dead-letter), and solo-death counts to keep. */
export interface DeathVerdict {
  poison: number[];
  counted: Array<[number, number]>;
}

/**
 * A worker died with `inFlight` (its updates begun or sent, not settled).
 * @param unexplained true for a crash, an unasked exit or a protocol violation; false for a
 *   death the master caused or knows the cause of (no suspects then)
 */
export function onWorkerDeath(p: PoisonState, inFlight: readonly number[], unexplained: boolean): DeathVerdict {
  const verdict: DeathVerdict = { poison: [], counted: [] };
  if (!unexplained || inFlight.length === 0) return verdict;
  if (inFlight.length > 1) {
    for (const id of inFlight) p.suspects.add(id);
    return verdict;
  }
  const id = inFlight[0]!;
  const n = (p.soloDeaths.get(id) ?? 0) + 1;
  verdict.counted.push([id, n]);
  if (n >= MAX_SOLO_DEATHS) {
    verdict.poison.push(id);
    forget(p, id);
  } else {
    p.soloDeaths.set(id, n);
    p.suspects.add(id);
  }
  // Bounded: a bot can be suspected of at most a window's worth at a time, but ids it never sees again linger.
  if (p.soloDeaths.size > 1000) p.soloDeaths.delete(p.soloDeaths.keys().next().value!);
  return verdict;
}

/** `id` settled (handled, failed, dead-lettered or dropped): no longer suspected. */
export function forget(p: PoisonState, id: number): void {
  p.suspects.delete(id);
  p.soloDeaths.delete(id);
}

/** Whether the next worker must take updates one at a time (a suspect is pending). */
export const onProbation = (p: PoisonState): boolean => p.suspects.size > 0;

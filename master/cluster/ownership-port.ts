/**
 * The cluster's ownership changes carried to the delivery and lifecycle wings: a bot taken has
 * its shared journal read (pending updates, recent acked ids) before its worker starts; a bot
 * lost has its journal index dropped once its worker is gone, unless it was taken back meanwhile.
 */
import type { Journal } from '../delivery/journal.js';
import type { Cluster, OwnershipPort } from './cluster.js';

/** The port `cluster.start` gets: `lifecycle` (the supervisor) wrapped with the journal's own/disown. A failed read is the journal's to log and retry. */
export function ownershipPort(cluster: Pick<Cluster, 'ownerOf'>, lifecycle: OwnershipPort, journal: Pick<Journal, 'own' | 'disown'>): OwnershipPort {
  return {
    async ownershipChanged(botId, owner) {
      if (owner === null) await journal.own?.(botId);
      await lifecycle.ownershipChanged(botId, owner);
      if (owner !== null && cluster.ownerOf(botId) !== null) journal.disown?.(botId);
    },
    renewLease: (until) => lifecycle.renewLease(until),
  };
}

/**
 * The cluster's ownership changes carried to the delivery and lifecycle wings: a bot taken has
 * its shared journal (pending updates, recent acked ids) and its restart history read before its worker starts; a bot
 * lost has its journal index dropped once its worker is gone, unless it was taken back meanwhile.
 */
import type { Journal } from '../delivery/journal.js';
import type { Cluster, OwnershipPort } from './cluster.js';

/**
 * The port `cluster.start` gets: `lifecycle` (the supervisor) wrapped with the journal's own/disown
 * and `readHistory` (the bot's restart history as the last owner kept it, read before it starts).
 * A failed read is the reader's to log.
 */
export function ownershipPort(cluster: Pick<Cluster, 'ownerOf'>, lifecycle: OwnershipPort, journal: Pick<Journal, 'own' | 'disown'>, readHistory?: (botId: string) => Promise<void>): OwnershipPort {
  return {
    async ownershipChanged(botId, owner) {
      if (owner === null) await Promise.all([journal.own?.(botId), readHistory?.(botId)]);
      await lifecycle.ownershipChanged(botId, owner);
      if (owner !== null && cluster.ownerOf(botId) !== null) journal.disown?.(botId);
    },
    renewLease: (until) => lifecycle.renewLease(until),
  };
}

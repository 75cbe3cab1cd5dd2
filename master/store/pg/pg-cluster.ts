/**
 * The cluster's rows on PostgreSQL (migration 2): `cluster_members` with leases computed by
 * the database (`now() + lease`: one clock for every master, as River and Oban keep their
 * leader rows), `bot_owners` changed only by conditional updates (compare-and-set on the row
 * read), and NOTIFY on `botfleet_cluster` after a leave or a release so the others look at
 * once instead of at their next tick.
 */
import type pg from 'pg';
import type { BotOwnerRow, ClusterStore, MemberRow } from '../store.js';
import { inTransaction, storeCall } from './connect.js';

/**
 * The fencing check of a write about a bot (Kleppmann's fencing token), as SQL over the
 * expressions `bot` and `epoch`: true when `epoch` is null (no cluster's fence), else when the
 * bot's owner row still holds that epoch; the row is read under a share lock, so no take slips
 * between the check and the write of the same transaction.
 */
export const holdsEpoch = (bot: string, epoch: string): string =>
  `(${epoch}::bigint IS NULL OR EXISTS (SELECT 1 FROM bot_owners o WHERE o.bot_id = ${bot} AND o.bot_epoch = ${epoch}::bigint FOR SHARE))`;

/** The channel members and releases are announced on. */
export const CLUSTER_CHANNEL = 'botfleet_cluster';

/**
 * The cluster store on an open, migrated pool; `watch` subscribes to {@link CLUSTER_CHANNEL} on
 * the store's LISTEN connection. Each statement is given up after `timeoutMs` (node-postgres
 * `query_timeout`; the connection is then dropped): a connection blackholed by the network
 * (no FIN, no RST) costs one renewal, not the pool's whole statement timeout.
 */
export function pgCluster(pool: pg.Pool, url: string, watch: ClusterStore['watch'], timeoutMs?: number): ClusterStore {
  const bounded = (text: string, values: unknown[]) => ({ text, values, ...(timeoutMs ? { query_timeout: timeoutMs } : {}) });
  const q = <R extends pg.QueryResultRow>(what: string, sql: string, params: unknown[] = []) => storeCall(url, what, () => pool.query<R>(bounded(sql, params)));
  return {
    async join(member, host, pid, leaseMs) {
      const r = await q<{ epoch: number }>('joining the cluster', `INSERT INTO cluster_members (member_id, epoch, host, pid, expires_at)
        VALUES ($1, nextval('cluster_epochs'), $2, $3, now() + $4 * interval '1 millisecond')
        ON CONFLICT (member_id) DO UPDATE SET epoch = excluded.epoch, host = excluded.host, pid = excluded.pid, joined_at = now(), renewed_at = now(), expires_at = excluded.expires_at
        WHERE cluster_members.expires_at <= now()
        RETURNING epoch`, [member, host, pid, leaseMs]);
      return r.rows[0]?.epoch ?? null;
    },
    async renew(member, epoch, leaseMs) {
      const r = await q('renewing the lease', `UPDATE cluster_members SET renewed_at = now(), expires_at = now() + $3 * interval '1 millisecond'
        WHERE member_id = $1 AND epoch = $2 AND expires_at > now()`, [member, epoch, leaseMs]);
      return r.rowCount === 1;
    },
    leave: (member, epoch) => storeCall(url, 'leaving the cluster', () => inTransaction(pool, async (c) => {
      await c.query(bounded(`UPDATE bot_owners SET member_id = '', member_epoch = 0, since = now(), cause = 'released' WHERE member_id = $1 AND member_epoch = $2`, [member, epoch]));
      await c.query(bounded('DELETE FROM cluster_members WHERE member_id = $1 AND epoch = $2', [member, epoch]));
      await c.query(bounded(`SELECT pg_notify('${CLUSTER_CHANNEL}', $1)`, [member]));
    })),
    async liveMembers(): Promise<MemberRow[]> {
      const r = await q<{ member_id: string; epoch: number; host: string; pid: number; ago: number; joined: number }>('reading the members', `SELECT member_id, epoch, host, pid,
        (extract(epoch FROM now() - renewed_at) * 1000)::bigint AS ago, (extract(epoch FROM joined_at) * 1000)::bigint AS joined
        FROM cluster_members WHERE expires_at > now() ORDER BY member_id`);
      return r.rows.map((m) => ({ id: m.member_id, epoch: m.epoch, host: m.host, pid: m.pid, renewedAgoMs: m.ago, joinedAt: m.joined }));
    },
    async owners(): Promise<BotOwnerRow[]> {
      const r = await q<{ bot_id: string; member_id: string; member_epoch: number; bot_epoch: number; since: number; cause: string }>('reading the owners',
        'SELECT bot_id, member_id, member_epoch, bot_epoch, (extract(epoch FROM since) * 1000)::bigint AS since, cause FROM bot_owners');
      return r.rows.map((o) => ({ bot: o.bot_id, member: o.member_id, memberEpoch: o.member_epoch, botEpoch: o.bot_epoch, since: o.since, cause: o.cause }));
    },
    async enabledBots() {
      return (await q<{ id: string }>('listing the bots', 'SELECT id FROM bots WHERE enabled = 1 ORDER BY id')).rows.map((r) => r.id);
    },
    async take(bot, from, member, epoch, cause) {
      const r = from === null
        ? await q<{ bot_epoch: number }>('taking a bot', `INSERT INTO bot_owners (bot_id, member_id, member_epoch, bot_epoch, cause) VALUES ($1, $2, $3, 1, $4)
            ON CONFLICT (bot_id) DO NOTHING RETURNING bot_epoch`, [bot, member, epoch, cause])
        : await q<{ bot_epoch: number }>('taking a bot', `UPDATE bot_owners SET member_id = $2, member_epoch = $3, bot_epoch = bot_epoch + 1, since = now(), cause = $4
            WHERE bot_id = $1 AND member_id = $5 AND member_epoch = $6 AND bot_epoch = $7 RETURNING bot_epoch`, [bot, member, epoch, cause, from.member, from.memberEpoch, from.botEpoch]);
      return r.rows[0]?.bot_epoch ?? null;
    },
    release: (bot, member, epoch) => storeCall(url, 'releasing a bot', () => inTransaction(pool, async (c) => {
      await c.query(bounded(`UPDATE bot_owners SET member_id = '', member_epoch = 0, since = now(), cause = 'released' WHERE bot_id = $1 AND member_id = $2 AND member_epoch = $3`, [bot, member, epoch]));
      await c.query(bounded(`SELECT pg_notify('${CLUSTER_CHANNEL}', $1)`, [bot]));
    })),
    watch,
  };
}

/**
 * This master as a member of the cluster (DESIGN.md, "The cluster"; PostgreSQL only): it
 * joins with a new epoch, renews its lease every CLUSTER_RETRY_MS on the database's clock,
 * and at each renewal (or a NOTIFY from another member) looks at the members and owner rows
 * and carries out plan.ts's actions: takes by conditional update, releases one at a time
 * after the bot's worker has exited, stops a bot taken from it. The self-fence: the renew
 * deadline runs on the monotonic clock from the send of the last good renewal; past it the
 * master stops every bot it owns by itself (Kubernetes' leader election does not fence: we
 * do), then joins again with a new epoch once the database answers.
 */
import os from 'node:os';
import type { Logger } from 'pino';
import { errorMessage } from '../../common/errors.js';
import { machineMonoMs } from '../../common/mono.js';
import type { BotOwnerRow, ClusterStore, MemberRow } from '../store/store.js';
import { planOwnership, type OwnerRow } from './plan.js';

/** Timing (ms), as Kubernetes leader election's lease / renew deadline / retry period. */
export interface ClusterTiming { leaseMs: number; renewDeadlineMs: number; retryMs: number }

/**
 * What the cluster tells the lifecycle: a bot's owner changed (null: this master; resolves once
 * a lost bot's worker has exited), and the lease's deadline for the workers (machine monotonic ms).
 */
export interface OwnershipPort {
  ownershipChanged(botId: string, owner: string | null): Promise<void>;
  renewLease(until: number): void;
}

/** The cluster as this master sees it, for `botfleet cluster` and /api/cluster/status. */
export interface ClusterStatus {
  memberId: string;
  epoch: number | null;
  leaseLive: boolean;
  members: MemberRow[];
  owners: BotOwnerRow[];
  counters: ClusterCounters;
}

/** Since start: takeovers by cause, renewals failed, self-fences. */
export interface ClusterCounters { takeovers: Record<string, number>; renewFailures: number; selfFences: number; lastRenewMs: number | null }

/** The cluster's figures for /metrics, read without a database call: from the last look, and this master's counters. */
export interface ClusterGauges { liveMembers: number; ownedHere: number; withoutOwner: number; leaseLive: boolean; counters: ClusterCounters }

/** A member of the cluster. */
export interface Cluster {
  readonly memberId: string;
  /** The member that runs `bot` (this master's id when it runs here), or null while none does (as of the last look). */
  memberOf(bot: string): string | null;
  /** The bot epoch this master holds `bot` by (the fencing token of its writes about it), null when it does not own it. */
  epochOf(bot: string): number | null;
  /** A look now (after the one running): whether this master still owns `bot` with a live lease (a worker's 409). */
  recheck(bot: string): Promise<boolean>;
  gauges(): ClusterGauges;
  /** Who runs `bot` instead of this master (a member's id, or why nobody yet); null when this master owns it. */
  ownerOf(bot: string): string | null;
  /** Join and keep the lease; ownership follows. Resolves after the first look (the joining master's share is taken). */
  start(port: OwnershipPort): Promise<void>;
  /** Take no more bots (the master is stopping; it keeps renewing while its bots drain). */
  stopTaking(): void;
  /** Stop renewing (the bots are stopped by the caller first), release every bot and leave; the others take over at once. */
  leave(): Promise<void>;
  /** The deadline a new worker gets (machine monotonic ms): this master's own, 0 while it holds no live lease. */
  leaseUntil(): number;
  /** Why this master's lease is not live (for /health), else null. */
  problem(): string | null;
  status(): Promise<ClusterStatus>;
}

/** Options of {@link createCluster}; `now` is the monotonic clock (ms). */
export interface ClusterOptions { store: ClusterStore; memberId: string; timing: ClusterTiming; logger: Logger; now?: () => number }

/** A member over `o.store` (nothing happens before `start`). */
export function createCluster(o: ClusterOptions): Cluster {
  return new Member(o);
}

class Member implements Cluster {
  readonly memberId: string;
  private epoch: number | null = null;
  /** Monotonic ms until which this master may run its bots (the last good renewal's send + the renew deadline). */
  private validUntil = -Infinity;
  private readonly owned = new Map<string, number>();
  private rows = new Map<string, BotOwnerRow>();
  private seen = { live: 0, withoutOwner: 0 };
  private releasing: string | null = null;
  private timer: NodeJS.Timeout | null = null;
  private fenceTimer: NodeJS.Timeout | null = null;
  private ticking: Promise<void> | null = null;
  private again = false;
  private stopped = false;
  private leaving = false;
  private waitingToJoin = false;
  private unwatch: (() => Promise<void>) | null = null;
  private port: OwnershipPort | null = null;
  private readonly counters: ClusterCounters = { takeovers: {}, renewFailures: 0, selfFences: 0, lastRenewMs: null };
  private readonly now: () => number;

  constructor(private readonly o: ClusterOptions) {
    this.memberId = o.memberId;
    this.now = o.now ?? (() => performance.now());
  }

  ownerOf(bot: string): string | null {
    return this.owned.has(bot) ? null : (this.memberOf(bot) ?? 'no owner yet (the cluster decides)');
  }

  memberOf(bot: string): string | null {
    if (this.owned.has(bot)) return this.memberId;
    const row = this.rows.get(bot);
    return row && row.member !== '' ? row.member : null;
  }

  epochOf(bot: string): number | null {
    return this.owned.get(bot) ?? null;
  }

  async recheck(bot: string): Promise<boolean> {
    while (this.ticking) await this.ticking; // then a look of its own (nothing runs between the check and the start)
    if (!this.stopped) await this.tick();
    return this.owned.has(bot) && this.problem() === null;
  }

  gauges(): ClusterGauges {
    return { liveMembers: this.seen.live, ownedHere: this.owned.size, withoutOwner: this.seen.withoutOwner, leaseLive: this.problem() === null, counters: { ...this.counters, takeovers: { ...this.counters.takeovers } } };
  }

  async start(port: OwnershipPort): Promise<void> {
    this.port = port;
    await this.tick();
    this.unwatch = this.o.store.watch(() => this.wake());
    this.timer = setInterval(() => this.wake(), this.o.timing.retryMs);
  }

  /** A look now, or right after the one running. */
  private wake(): void {
    if (this.stopped) return;
    if (this.ticking) return void (this.again = true);
    void this.tick();
  }

  private tick(): Promise<void> {
    this.ticking = this.look().catch((err: unknown) => this.o.logger.error({ err: errorMessage(err) }, 'cluster: a look at the members failed')).finally(() => {
      this.ticking = null;
      if (this.again && !this.stopped) (this.again = false), this.wake();
    });
    return this.ticking;
  }

  /** Renew (or join), fence when the deadline passed, then act on the plan. */
  private async look(): Promise<void> {
    if (!(await this.renew())) return;
    const [live, owners, bots] = await Promise.all([this.o.store.liveMembers(), this.o.store.owners(), this.o.store.enabledBots()]);
    this.rows = new Map(owners.map((r) => [r.bot, r]));
    const wanted = new Set(bots);
    const liveIds = new Set(live.map((m) => `${m.id}\u0000${m.epoch}`));
    const ownerLive = (r: BotOwnerRow | undefined) => r !== undefined && r.member !== '' && liveIds.has(`${r.member}\u0000${r.memberEpoch}`);
    this.seen = { live: live.length, withoutOwner: bots.filter((b) => !ownerLive(this.rows.get(b))).length };
    for (const bot of [...this.owned.keys()]) if (!wanted.has(bot)) this.owned.delete(bot); // disabled or removed: the lifecycle stops it
    const actions = planOwnership({ me: { id: this.memberId, epoch: this.epoch! }, live, rows: this.rows, bots, owned: this.owned, releasing: this.releasing });
    // Takes are quick (a row and a launch); a loss or a release waits for a drain, never the renewals.
    for (const a of actions) {
      if (a.type === 'take') {
        if (!this.leaving) await this.take(a.bot, a.from, a.cause);
      } else if (a.type === 'lost') void this.lose(a.bot, a.owner, 'taken by another member');
      else void this.release(a.bot, a.to);
    }
  }

  /** Keep the lease (join with a new epoch when there is none). @returns whether this master may act now */
  private async renew(): Promise<boolean> {
    const { store } = this.o;
    const { leaseMs, renewDeadlineMs } = this.o.timing;
    const sentAt = this.now();
    // A master that wakes past its deadline (it was paused, or the database was slow) stops its bots before anything else.
    if (this.epoch !== null && sentAt > this.validUntil) this.fence(`the lease was not renewed within ${renewDeadlineMs} ms`);
    try {
      if (this.epoch === null) {
        if (!(await this.join())) return false;
      } else if (!(await store.renew(this.memberId, this.epoch, leaseMs))) {
        this.fence('the lease row belongs to another start of this member id');
        return false;
      }
      if (this.epoch === null) return false; // fenced while the renewal was on its way: it joins again at the next look
      this.validUntil = sentAt + renewDeadlineMs;
      this.counters.lastRenewMs = this.now() - sentAt;
      this.port?.renewLease(this.leaseUntil());
      this.armFence();
      return true;
    } catch (err) {
      this.counters.renewFailures++;
      this.o.logger.warn({ err: errorMessage(err) }, 'cluster: the lease could not be renewed');
      return false;
    }
  }

  /** At the deadline, fence unless a renewal came first (a renewal stuck on a dead connection must not hold the fence back). */
  private armFence(): void {
    if (this.fenceTimer) clearTimeout(this.fenceTimer);
    this.fenceTimer = setTimeout(() => {
      this.fenceTimer = null;
      if (this.epoch !== null && this.now() > this.validUntil) this.fence(`the lease was not renewed within ${this.o.timing.renewDeadlineMs} ms`);
    }, Math.max(0, this.validUntil - this.now()) + 1);
    this.fenceTimer.unref();
  }

  /** @returns false while another start's lease on this member id is live (this one waits for it to expire) */
  private async join(): Promise<boolean> {
    const epoch = await this.o.store.join(this.memberId, os.hostname(), process.pid, this.o.timing.leaseMs);
    if (epoch === null) {
      if (!this.waitingToJoin) this.o.logger.warn({ memberId: this.memberId }, 'cluster: this member id is held by a live lease (an earlier start, or another master with the same MEMBER_ID): waiting for it to expire');
      this.waitingToJoin = true;
      return false;
    }
    this.waitingToJoin = false;
    this.epoch = epoch;
    this.o.logger.info({ memberId: this.memberId, epoch }, 'cluster: joined');
    return true;
  }

  /** Stop every owned bot now and forget the epoch: the next look joins again. */
  private fence(why: string): void {
    this.counters.selfFences++;
    this.o.logger.error({ memberId: this.memberId, epoch: this.epoch, bots: this.owned.size }, `cluster: self-fenced: ${why}; every bot of this master stops`);
    this.epoch = null;
    this.validUntil = -Infinity;
    for (const bot of [...this.owned.keys()]) void this.lose(bot, '(this master fenced itself)', why);
  }

  private async take(bot: string, from: OwnerRow | null, cause: string): Promise<void> {
    const botEpoch = await this.o.store.take(bot, from, this.memberId, this.epoch!, cause);
    if (botEpoch === null) return; // another member was first: the next look sees its row
    this.owned.set(bot, botEpoch);
    this.counters.takeovers[cause] = (this.counters.takeovers[cause] ?? 0) + 1;
    this.o.logger.info({ botId: bot, botEpoch, cause, from: from?.member || null }, 'cluster: bot taken');
    await this.port?.ownershipChanged(bot, null);
  }

  private async lose(bot: string, owner: string, why: string): Promise<void> {
    if (!this.owned.delete(bot)) return;
    this.o.logger.warn({ botId: bot, owner, why }, 'cluster: bot lost');
    await this.port?.ownershipChanged(bot, owner);
  }

  /** Drain `bot`, then free its row for `to` (one release at a time). */
  private async release(bot: string, to: string): Promise<void> {
    this.releasing = bot;
    try {
      const epoch = this.epoch;
      this.owned.delete(bot);
      await this.port?.ownershipChanged(bot, to);
      if (epoch !== null) await this.o.store.release(bot, this.memberId, epoch);
      this.o.logger.info({ botId: bot, to }, 'cluster: bot released');
    } catch (err) {
      this.o.logger.error({ botId: bot, err: errorMessage(err) }, 'cluster: a release failed (the row frees itself when this lease expires)');
    } finally {
      this.releasing = null;
      this.wake();
    }
  }

  leaseUntil(): number {
    const left = this.validUntil - this.now();
    return left > 0 ? machineMonoMs() + Math.floor(left) : 0;
  }

  problem(): string | null {
    if (this.epoch === null) return `this master holds no lease in the cluster (member ${this.memberId}${this.waitingToJoin ? ': the id is held by a live lease' : ''})`;
    return this.now() > this.validUntil ? `this master's lease was not renewed within ${this.o.timing.renewDeadlineMs} ms` : null;
  }

  stopTaking(): void {
    this.leaving = true;
  }

  async leave(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.fenceTimer) clearTimeout(this.fenceTimer);
    await this.ticking;
    await this.unwatch?.();
    if (this.epoch !== null) await this.o.store.leave(this.memberId, this.epoch).catch((err: unknown) => this.o.logger.error({ err: errorMessage(err) }, 'cluster: leaving failed (the others take over when the lease expires)'));
    this.owned.clear();
    this.epoch = null;
  }

  async status(): Promise<ClusterStatus> {
    const [members, owners] = await Promise.all([this.o.store.liveMembers(), this.o.store.owners()]);
    return { memberId: this.memberId, epoch: this.epoch, leaseLive: this.problem() === null, members, owners, counters: { ...this.counters, takeovers: { ...this.counters.takeovers } } };
  }
}

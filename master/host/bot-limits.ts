/**
 * What the kernel holds each bot to: its memory cap and process count, in a cgroup of its
 * own where the machine allows (host/cgroups.ts), else RLIMIT_NPROC on its own uid (set
 * at exec by util-linux prlimit; the count is per real uid, so only with per-bot uids).
 * Also tells the supervisor when the kernel's OOM killer ended a worker (reason `memory`),
 * and measures each bot's directory against its data cap (host/disk.ts).
 */
import crypto from 'node:crypto';
import type { Logger } from 'pino';
import { openCgroups, type BotCgroups, type BotGroup, type CgroupEnv } from './cgroups.js';
import { DirSizes } from './disk.js';

/** `master.isolation.cgroups` in status. */
export interface LimitsStatus {
  /** `v1`, `v2`, or null (sampling and RLIMIT_NPROC instead). */
  cgroups: 'v1' | 'v2' | null;
  note: string | null;
}

/** What a fork gets: the group to join, or the RLIMIT_NPROC to exec under. */
export interface ForkLimits {
  /** The `cgroup.procs` files the worker joins before it execs node. */
  cgroupProcs?: string[];
  /** RLIMIT_NPROC for the worker's uid (per-bot uids without a pids cgroup). */
  nproc?: number;
}

/** The kernel's limits per bot. */
export interface BotLimits {
  readonly status: LimitsStatus;
  /** Before a fork: the bot's group (made or updated), and the OOM count to compare at its exit. */
  forFork(botId: string, perBotUid: boolean): ForkLimits;
  /** After its worker's exit: whether the kernel's OOM killer acted in the bot's group since the fork. */
  oomKilledSinceFork(botId: string): boolean;
  /** The bot's memory as its group counts it (anonymous + shared, bytes), or null without a group. */
  memoryBytes(botId: string): number | null;
  /** The processes of the bot's group (its whole tree, however started), or null without a group. */
  pidsOf(botId: string): number[] | null;
  /** The size of the bot's directory `dir` (bytes, blocks used; null: unreadable), walked only when it may have changed (disk.ts, DirSizes): at once from the last walk, else the walk's promise. */
  dataBytes(botId: string, dir: () => string, stopAbove: number): number | null | Promise<number | null>;
  /** A bot gone for good: its group removed. */
  remove(botId: string): void;
  /** At the master's stop: every empty group removed. */
  close(): void;
}

/** What {@link createBotLimits} needs. */
export interface BotLimitsOptions {
  home: string;
  memoryBytes: number;
  processes: number;
  logger: Logger;
  /** The cgroup filesystem (tests); the real one by default. */
  cgroupEnv?: CgroupEnv;
}

/** The name of a home's cgroup base (`botfleet-` and 12 hex of its path's SHA-256): two homes never share one. */
export const cgroupName = (home: string): string => `botfleet-${crypto.createHash('sha256').update(home).digest('hex').slice(0, 12)}`;

/** Open the limits of one master (its groups are named after its home, so two homes never share one). */
export function createBotLimits(o: BotLimitsOptions): BotLimits {
  const name = cgroupName(o.home);
  const cg: BotCgroups = o.cgroupEnv ? openCgroups(name, o.cgroupEnv) : openCgroups(name);
  if (cg.note) o.logger.warn({ isolation: cg.note }, 'per-bot cgroups not in force: memory is sampled, processes limited per uid');
  const groups = new Map<string, { group: BotGroup; oomAtFork: number }>();
  const limits = { memoryBytes: o.memoryBytes, pids: o.processes };
  const sizes = new DirSizes();
  return {
    status: { cgroups: cg.kind, note: cg.note },
    forFork(botId, perBotUid) {
      const group = cg.forBot(botId, limits);
      if (!group) {
        groups.delete(botId);
        return perBotUid ? { nproc: o.processes } : {};
      }
      groups.set(botId, { group, oomAtFork: group.oomKills() });
      return { cgroupProcs: group.procsFiles() };
    },
    oomKilledSinceFork(botId) {
      const g = groups.get(botId);
      return g !== undefined && g.group.oomKills() > g.oomAtFork;
    },
    memoryBytes: (botId) => groups.get(botId)?.group.memoryBytes() ?? null,
    pidsOf: (botId) => groups.get(botId)?.group.pids() ?? null,
    dataBytes: (botId, dir, stopAbove) => sizes.measure(botId, dir, stopAbove),
    remove(botId) {
      groups.get(botId)?.group.remove();
      groups.delete(botId);
      sizes.forget(botId);
    },
    close() {
      sizes.close();
      for (const g of groups.values()) g.group.remove();
      groups.clear();
      cg.removeAll();
    },
  };
}

/**
 * Isolation of bots from each other and from the master (DESIGN.md, Security).
 * Two layers, each applied where it can be and reported in `master.isolation`:
 *
 * - **uid**: when the master may change user (root, or CAP_SETUID and CAP_SETGID),
 *   each worker runs as its own uid and gid, `WORKER_UID_BASE + slot` with a slot
 *   the registry gives each bot id once and never reuses (systemd's DynamicUser
 *   range 61184-65519 by default). libuv drops supplementary groups when a root
 *   parent sets uid/gid. The home is the master's (`data/`, `run/`, `logs/` 0700),
 *   so a worker cannot read the key, the registry, the webhook secret, the control
 *   socket, another worker's /proc, nor signal the master. At a worker's exit every
 *   process still running under its uid is SIGKILLed (grandchildren, `setsid` ones
 *   included), and the memory cap counts all of them.
 * - **permission**: Node's permission model (`--experimental-permission` on Node 20,
 *   `--permission` from 22): reads only of the code (`dist/`, `node_modules/`,
 *   `package.json`) and the bot's handler directory, writes only to the bot's data
 *   directory `<home>/bots/<botId>/`; child processes and worker threads only when
 *   the bot's settings say `allowChildProcess` / `allowWorkerThreads`.
 *
 * The worker's environment is an allowlist in every case (child-process.ts).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { ErrorCodes, fail } from '../../common/errors.js';
import type { MasterLock } from './lock.js';
import { lockUidRange, UID_LOCK_DIR } from './uid-locks.js';

export { UID_LOCK_DIR };
import { isBuiltinHandler } from '../../worker/handlers/index.js';
import { PACKAGE_ROOT, WORKER_ENTRY } from './worker-entry.js';
import { killMembers, killUid, killUids, removeShmOf } from './proc.js';
import { blockingPath, giveDirectory, handlerReadScope, prepareHome } from './bot-paths.js';

export { blockingPath, handlerReadScope };
import { holdsCapabilities, readCapabilities, setprivAvailable } from './privileges.js';

/** `master.isolation` in status: which layers are in force, and why one is not. */
export interface IsolationStatus {
  uid: boolean;
  permission: boolean;
  /** Always true: workers get an allowlisted environment. */
  envAllowlist: true;
  /** Per-bot cgroups in force (`v1`, `v2`), or null (host/bot-limits.ts); filled in by the master. */
  cgroups?: 'v1' | 'v2' | null;
  /** One line per layer that is off, and why. */
  notes: string[];
}

/** `WORKER_ISOLATION`: auto (every layer that can apply), uid (that layer only, required), permission (that layer only), off. */
export type IsolationSetting = 'auto' | 'uid' | 'permission' | 'off';

export { PACKAGE_ROOT };

/** Per-bot isolation applied at the fork (lifecycle/child-process.ts). */
export interface ForkIsolation {
  /** Run as this uid/gid (no supplementary groups: libuv drops them when the master is root). */
  uid?: number;
  gid?: number;
  /** Node flags placed before the entry (the permission model's). */
  nodeFlags?: string[];
  /** HOME for the worker (its writable data directory, also its working directory: the worker changes to it itself). */
  home?: string;
  /** The bot's cgroup (`cgroup.procs` files), joined by the worker's own first exec (host/privileges.ts). */
  cgroupProcs?: string[];
  /** RLIMIT_NPROC to exec under (per-bot uids without a pids cgroup). */
  nproc?: number;
}

/** What isolation needs of a bot's configuration. */
export interface IsolatedBot {
  handler: string;
  settings: Record<string, unknown>;
}

/** True when this process may set another uid/gid on its children: root, or CAP_SETUID (7) and CAP_SETGID (6) effective. */
export function canChangeUser(): boolean {
  if (process.getuid?.() === 0) return true;
  try {
    const line = fs.readFileSync('/proc/self/status', 'utf8').split('\n').find((l) => l.startsWith('CapEff:'));
    const caps = BigInt(`0x${line!.split(/\s+/)[1]}`);
    return (caps & (1n << 7n)) !== 0n && (caps & (1n << 6n)) !== 0n;
  } catch {
    return false;
  }
}

let permissionFlagProbed: string | null | undefined;
/** The permission model's flag this node accepts (`--permission`, else `--experimental-permission`), or null. Probed once. */
export function permissionFlag(): string | null {
  if (permissionFlagProbed !== undefined) return permissionFlagProbed;
  permissionFlagProbed = null;
  for (const flag of ['--permission', '--experimental-permission']) {
    try {
      execFileSync(process.execPath, [flag, '--disable-warning=ExperimentalWarning', '-e', '0'], { stdio: 'ignore', timeout: 10_000 });
      permissionFlagProbed = flag;
      break;
    } catch {
      // not this one
    }
  }
  return permissionFlagProbed;
}

/**
 * Node flags of the permission model for one worker. Each path gets its own
 * `--allow-fs-read`/`--allow-fs-write` (Node 20.16+ and 22 take no comma lists).
 */
export function permissionFlags(flag: string, reads: string[], writes: string[], allow: { childProcess: boolean; workerThreads: boolean }): string[] {
  return [
    flag, '--disable-warning=ExperimentalWarning',
    ...reads.map((p) => `--allow-fs-read=${p}`),
    ...writes.map((p) => `--allow-fs-write=${p}`),
    ...(allow.childProcess ? ['--allow-child-process'] : []),
    ...(allow.workerThreads ? ['--allow-worker'] : []),
  ];
}

/** What {@link createIsolation} needs. */
export interface IsolationDeps {
  setting: IsolationSetting;
  home: string;
  uidBase: number;
  /** The registry's stable slot for a bot id (allocated on first use, never reused). */
  uidSlot(botId: string): number;
  /** Every slot ever allocated (to end leftovers of a crashed master). */
  allSlots(): number[];
  logger: Logger;
  /** ALLOW_UNISOLATED_CHILD_PROCESSES: child processes and threads without per-bot uids are accepted. */
  allowUnisolatedChildren?: boolean;
  /** BOTS_DATA_DIR: where the bots' own directories are (default `<home>/bots`). */
  botsDir?: string;
}

/** The isolation the supervisor applies per bot. */
export interface Isolation {
  readonly status: IsolationStatus;
  /** Fork options for one bot. @throws BotfleetError `BF_ERR_ISOLATION` (one line: which path blocks it) */
  forBot(botId: string, spec: IsolatedBot): ForkIsolation;
  /**
   * After a worker's exit: end every process left under the bot's uid. `members`: the bot's
   * cgroup's processes (null without one), which are all of them (a worker that cannot join
   * its group does not start: host/privileges.ts joinArgs); without a group, a /proc listing.
   * @returns how many were killed
   */
  afterExit(botId: string, members?: () => readonly number[] | null): number;
  /** The bot's own directory (`BOTS_DATA_DIR`/<botId>, default `<home>/bots/<botId>`). */
  dataDir(botId: string): string;
  /** Delete a removed bot's data directory `<home>/bots/<botId>/`. @returns whether there was one */
  removeData(botId: string): boolean;
  /** At master start: end processes left under any bot uid by an earlier master. */
  endLeftovers(): number;
  /** Let go of the uid range (at the master's stop). */
  release(): void;
}


/** Code a worker must read: the worker entry and the library, checked for the uid layer at start. */
const CODE_PATHS = [WORKER_ENTRY, path.join(PACKAGE_ROOT, 'node_modules', 'node-telegram-bot-api', 'package.json')];

/**
 * The per-bot uid layer, when it can apply: the master may change user, other users can
 * read the code and pass to the home, and no other master holds this uid range.
 * @returns the range's lock, or null (the reason in `notes`)
 * @throws BotfleetError `BF_ERR_ISOLATION` when WORKER_ISOLATION=uid cannot apply, or the range is taken
 */
function claimUidRange(d: IsolationDeps, notes: string[]): MasterLock | null {
  if (!canChangeUser()) {
    notes.push('per-bot uids off: the master cannot change user (not root, no CAP_SETUID/CAP_SETGID)');
    if (d.setting === 'uid') throw fail(ErrorCodes.ISOLATION, 'WORKER_ISOLATION=uid needs a master that may change user (root or CAP_SETUID/CAP_SETGID)');
    return null;
  }
  // The code must be readable, and the way to <home>/bots/<id>/ passable (the home itself is opened by prepareHome).
  const blocked = [...CODE_PATHS, path.dirname(path.resolve(d.home)), ...(d.botsDir ? [path.dirname(path.resolve(d.botsDir))] : [])].map(blockingPath).find((p) => p !== null);
  if (blocked) {
    const why = `per-bot uids off: a worker uid cannot read the code, ${blocked} is closed to other users (mode without o+x/o+r)`;
    if (d.setting === 'uid') throw fail(ErrorCodes.ISOLATION, why);
    notes.push(why);
    return null;
  }
  // Two masters on one uid range would kill each other's workers (every process of a bot uid dies at its exit).
  return lockUidRange(d.uidBase);
}

/** Decide the layers once (at master start) and say which are off and why. */
export function createIsolation(d: IsolationDeps): Isolation {
  const notes: string[] = [];
  refuseInheritedPrivilege();
  if (d.setting === 'off') notes.push('WORKER_ISOLATION=off: bots run as the master user without the permission model');
  const rangeLock = d.setting === 'auto' || d.setting === 'uid' ? claimUidRange(d, notes) : null;
  const uid = rangeLock !== null;
  let permission: string | null = null;
  if (d.setting === 'auto' || d.setting === 'permission') {
    permission = permissionFlag();
    if (!permission) notes.push(`permission model off: node ${process.version} accepts neither --permission nor --experimental-permission`);
  }
  for (const n of notes) d.logger.warn({ isolation: n }, 'isolation layer not in force');
  const botsDir = path.resolve(d.botsDir ?? path.join(d.home, 'bots'));
  if (uid) prepareHome(d.home, botsDir);
  else fs.mkdirSync(botsDir, { recursive: true, mode: 0o711 });
  const uidOf = (botId: string) => d.uidBase + d.uidSlot(botId);
  return {
    status: { uid, permission: permission !== null, envAllowlist: true, notes },
    forBot: (botId, spec) => forkIsolation(d, { uid: uid ? uidOf(botId) : null, permission, botsDir }, botId, spec),
    dataDir: (botId) => path.join(botsDir, botId),
    afterExit(botId, members) {
      if (!uid) return 0;
      removeShmOf(uidOf(botId)); // shared memory outlives its processes: it goes with them
      // The group's list costs the bot's own processes; a /proc listing costs every process on the machine, per exit.
      return (members && killMembers(members)) ?? killUid(uidOf(botId));
    },
    removeData(botId) {
      const dir = path.join(botsDir, botId);
      if (path.dirname(dir) !== botsDir || !fs.existsSync(dir)) return false;
      try {
        fs.rmSync(dir, { recursive: true, force: true });
        return true;
      } catch (err) {
        // A non-root master cannot enter the bot's 0700 directory: the operator removes it.
        d.logger.warn({ botId, dir, err: (err as Error).message }, 'data directory of a removed bot could not be deleted');
        return false;
      }
    },
    endLeftovers: () => (uid ? killUids(new Set(d.allSlots().map((slot) => d.uidBase + slot))) : 0), // one listing a round, not one per slot
    release: () => rangeLock?.release(),
  };
}

/** What one fork gets, given the layers in force: the bot's uid (null: none), the permission model's flag (null: off). */
function forkIsolation(d: IsolationDeps, layers: { uid: number | null; permission: string | null; botsDir: string }, botId: string, spec: IsolatedBot): ForkIsolation {
  const dataDir = path.join(layers.botsDir, botId);
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const out: ForkIsolation = { home: dataDir };
  const handlerFile = isBuiltinHandler(spec.handler) ? null : path.resolve(d.home, spec.handler);
  // A handler that is not there is the bot's configuration error (do not restart), not a closed path.
  if (handlerFile && !fs.existsSync(handlerFile)) throw fail(ErrorCodes.HANDLER_LOAD, `handler "${spec.handler}" not found (${handlerFile})`);
  const s = spec.settings;
  const wantsChildren = s.allowChildProcess === true || s.allowWorkerThreads === true;
  if (wantsChildren && layers.uid === null && !d.allowUnisolatedChildren) {
    throw fail(ErrorCodes.ISOLATION, 'allowChildProcess/allowWorkerThreads need per-bot uids (a child escapes the permission model and could read the key); set ALLOW_UNISOLATED_CHILD_PROCESSES=true to accept that');
  }
  if (layers.uid !== null) {
    const u = layers.uid;
    giveDirectory(dataDir, u);
    const blocked = handlerFile ? blockingPath(handlerFile) : null;
    if (blocked) throw fail(ErrorCodes.ISOLATION, `bot uid ${u} cannot read its handler: ${blocked} is closed to other users`);
    Object.assign(out, { uid: u, gid: u });
  }
  if (layers.permission) {
    const reads = [path.join(PACKAGE_ROOT, 'dist'), path.join(PACKAGE_ROOT, 'node_modules'), path.join(PACKAGE_ROOT, 'package.json'), dataDir];
    if (handlerFile) reads.push(handlerReadScope(handlerFile, d.home));
    out.nodeFlags = permissionFlags(layers.permission, reads, [dataDir], { childProcess: s.allowChildProcess === true, workerThreads: s.allowWorkerThreads === true });
  }
  return out;
}

/**
 * A master that holds capabilities passes them to its workers unless setpriv clears them
 * (host/privileges.ts): without setpriv such a master does not start. A root master
 * without setpriv is safe only through libuv's uid switch (the kernel clears
 * capabilities on a change from uid 0), so it is refused too: a worker must never run with
 * a capability.
 * @throws BotfleetError `BF_ERR_ISOLATION`
 */
function refuseInheritedPrivilege(): void {
  if (setprivAvailable()) return;
  let caps;
  try {
    caps = readCapabilities();
  } catch {
    return; // no /proc: not Linux, nothing to inherit that we could see
  }
  if (holdsCapabilities(caps)) {
    throw fail(ErrorCodes.ISOLATION, 'the master holds capabilities and util-linux setpriv is missing: workers would inherit them (install util-linux, or run the master without capabilities)');
  }
}


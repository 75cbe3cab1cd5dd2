/**
 * What a worker may inherit of the master's privileges: nothing. Every worker is
 * exec'd through util-linux `setpriv` (setpriv(1)), which, before it execs node:
 * switches to the bot's uid and gid with no supplementary groups (when per-bot uids
 * apply), clears the inheritable and ambient capability sets, empties the bounding
 * set where the master may (CAP_SETPCAP), and sets `no_new_privs` (so no setuid binary
 * or file capability can raise it later). The kernel clears capabilities only on a
 * change *from* uid 0 (capabilities(7), "Effect of user ID changes"): a master run as a
 * non-root user with ambient capabilities (the systemd unit) would otherwise hand them
 * to every bot, and a bot could `setuid(0)`.
 *
 * The uid switch happens in setpriv, not in libuv: libuv `chdir`s to a spawn's `cwd`
 * before it switches uid, and a non-root master cannot enter a bot's 0700 directory.
 * Workers are spawned with no `cwd` and change directory themselves (worker/main.ts).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

/** A process's capability sets (proc(5), /proc/<pid>/status), as bit masks. */
export interface CapabilitySets {
  inheritable: bigint;
  permitted: bigint;
  effective: bigint;
  bounding: bigint;
  ambient: bigint;
  noNewPrivs: boolean;
}

/** Capability numbers used here (linux/capability.h). */
export const CAP = { CHOWN: 0, KILL: 5, SETGID: 6, SETUID: 7, SETPCAP: 8 } as const;

/** Parse the `Cap*` and `NoNewPrivs` lines of a /proc status text. Missing lines read as 0. */
export function parseCapabilities(status: string): CapabilitySets {
  const hex = (key: string) => {
    const m = new RegExp(`^${key}:\\s*([0-9a-f]+)`, 'm').exec(status);
    return m ? BigInt(`0x${m[1]}`) : 0n;
  };
  return {
    inheritable: hex('CapInh'), permitted: hex('CapPrm'), effective: hex('CapEff'), bounding: hex('CapBnd'), ambient: hex('CapAmb'),
    noNewPrivs: /^NoNewPrivs:\s*1/m.test(status),
  };
}

/** The capability sets of `pid` (default: this process). @throws when /proc cannot be read */
export function readCapabilities(pid: number | 'self' = 'self'): CapabilitySets {
  return parseCapabilities(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
}

/** util-linux setpriv, 2.31 or newer (for `--ambient-caps`). */
export const SETPRIV = 'setpriv';

/** Whether `setpriv` runs here with the options {@link dropArgs} uses. Probed once (~2 ms) and remembered. */
export const setprivAvailable = (): boolean => toolRuns(SETPRIV, ['--inh-caps=-all', '--ambient-caps=-all', '--no-new-privs', '--', 'true']);

/** True when this process holds any capability a child could inherit or regain (a non-empty effective, permitted, inheritable or ambient set). */
export function holdsCapabilities(caps: CapabilitySets = readCapabilities()): boolean {
  return (caps.effective | caps.permitted | caps.inheritable | caps.ambient) !== 0n;
}

/**
 * setpriv's arguments (up to and including `--`) for one worker: the bot's uid/gid
 * when given, every capability dropped, `no_new_privs`. The bounding set is emptied
 * only when the master holds CAP_SETPCAP (setpriv fails otherwise); with the other
 * sets empty and `no_new_privs`, a bounding set cannot give anything back.
 */
export function dropArgs(id: { uid?: number; gid?: number }, caps: CapabilitySets = masterCaps()): string[] {
  const args: string[] = [];
  if (id.uid !== undefined) args.push(`--reuid=${id.uid}`, `--regid=${id.gid ?? id.uid}`, '--clear-groups');
  args.push('--inh-caps=-all', '--ambient-caps=-all');
  if ((caps.effective & (1n << BigInt(CAP.SETPCAP))) !== 0n && caps.bounding !== 0n) args.push('--bounding-set=-all');
  args.push('--no-new-privs', '--');
  return args;
}

/** The OOM killer's preference for workers over the master (proc(5) oom_score_adj, -1000..1000). */
export const WORKER_OOM_SCORE_ADJ = 500;

const probed = new Map<string, boolean>();
/** Whether `cmd args` runs here (util-linux tools); probed once each (~2 ms) and remembered. */
export function toolRuns(cmd: string, args: string[]): boolean {
  const key = `${cmd} ${args.join(' ')}`;
  let ok = probed.get(key);
  if (ok === undefined) {
    try {
      execFileSync(cmd, args, { stdio: 'ignore', timeout: 5000 });
      ok = true;
    } catch {
      ok = false;
    }
    probed.set(key, ok);
  }
  return ok;
}

/**
 * The exec chain's limits for one worker (util-linux, each execs the next: one pid):
 * `prlimit --nproc` when asked (RLIMIT_NPROC counts the real uid's tasks). A tool that is
 * missing is left out.
 */
export function limitArgs(nproc: number | undefined): string[] {
  return nproc !== undefined && toolRuns('prlimit', ['--nproc=1024:1024', '--', 'true']) ? ['prlimit', `--nproc=${nproc}:${nproc}`, '--'] : [];
}

/**
 * `choom`, which raises the worker's oom_score_adj so the kernel's OOM killer takes a bot
 * before its master, for a chain without the joining shell (which writes it itself). Put
 * before setpriv: run with CAP_SYS_RESOURCE, the kernel also makes it the floor the bot
 * cannot lower it below (proc(5), oom_score_adj_min). Left out when missing.
 */
export function oomArgs(): string[] {
  return toolRuns('choom', ['-n', String(WORKER_OOM_SCORE_ADJ), '--', 'true']) ? ['choom', '-n', String(WORKER_OOM_SCORE_ADJ), '--'] : [];
}

/** The exit status of a worker that could not join its cgroup (sysexits.h EX_OSERR). */
export const JOIN_FAILED_EXIT = 71;

/**
 * The first exec of a worker when it has a cgroup: a shell that writes its own pid into
 * each `cgroup.procs` file, its oom_score_adj (as choom would: {@link oomArgs}, one exec
 * less, ~2.5 ms a start on these machines), and execs the rest (one pid throughout).
 * Joining from the child keeps the master's event loop out of it: a write to cgroup.procs
 * waits for the kernel's cgroup lock (an RCU grace period), and from the master it stalled
 * the loop to 60 ms while forking. A worker that cannot join says so on its stderr (its log)
 * and exits {@link JOIN_FAILED_EXIT} before any bot code runs: outside its group its caps
 * would not hold, and its leftovers, found from the group at its exit, would be missed.
 */
export function joinArgs(procsFiles: readonly string[]): string[] {
  if (procsFiles.length === 0) return [];
  const join = `while [ "$n" -gt 0 ]; do echo $$ > "$1" || { echo "botfleet: could not join cgroup $1: the worker does not start outside its caps" >&2; exit ${JOIN_FAILED_EXIT}; }; shift; n=$((n-1)); done`;
  const script = `n=$1; shift; ${join}; echo ${WORKER_OOM_SCORE_ADJ} > /proc/self/oom_score_adj 2>/dev/null; exec "$@"`;
  return ['/bin/sh', '-c', script, 'sh', String(procsFiles.length), ...procsFiles];
}

/**
 * Probe every exec tool a fork uses (setpriv, prlimit, choom), once, at the master's start:
 * each probe is a synchronous exec, which at the first fork stalled the event loop 60 ms
 * (bench measure 2, this round) against a 50 ms target.
 */
export function probeExecTools(): void {
  setprivAvailable();
  limitArgs(1);
  oomArgs();
  masterCaps();
}

let ownCaps: CapabilitySets | undefined;
/** This master's capability sets, read once (they do not change while it runs). */
function masterCaps(): CapabilitySets {
  if (ownCaps === undefined) {
    try {
      ownCaps = readCapabilities();
    } catch {
      ownCaps = parseCapabilities('');
    }
  }
  return ownCaps;
}

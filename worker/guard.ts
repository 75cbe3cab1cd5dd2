/**
 * What the worker sets up before any handler code runs: its working directory (its
 * data directory, `HOME`: the master spawns it with no `cwd`, see
 * master/host/privileges.ts), and a `process.kill` that refuses the master and
 * "every process of mine" (-1). With per-bot uids the kernel already refuses both
 * (EPERM); this matters where bots run as the master's user (the permission model
 * alone, which does not restrict signals). Under the permission model a handler cannot
 * reach the binding behind it (`process.binding` is denied).
 */

/** Refused targets: the master, its process group, and -1 (every process the user may signal). */
export function refusedKillTargets(masterPid: number): Set<number> {
  return new Set([masterPid, -masterPid, -1]);
}

/** Change to `HOME` and guard `process.kill`/`process._kill`. Called once, first thing in worker/main.ts. */
export function guardWorkerProcess(env: NodeJS.ProcessEnv = process.env): void {
  if (env.HOME) {
    try {
      process.chdir(env.HOME);
    } catch {
      // stays where it was spawned: relative paths of a handler then fail, which its log shows
    }
  }
  const refused = refusedKillTargets(process.ppid);
  const eperm = (pid: number) => Object.assign(new Error(`kill ${pid} EPERM: a bot may not signal its master`), { code: 'EPERM', errno: -1, syscall: 'kill' });
  const proc = process as unknown as { kill: typeof process.kill; _kill?: (pid: number, sig: number) => number };
  const kill = proc.kill.bind(process);
  proc.kill = ((pid: number, signal?: string | number) => {
    if (refused.has(Number(pid))) throw eperm(pid);
    return kill(pid, signal);
  }) as typeof process.kill;
  const raw = proc._kill?.bind(process);
  if (raw) proc._kill = (pid: number, sig: number) => (refused.has(Number(pid)) ? -1 : raw(pid, sig));
}

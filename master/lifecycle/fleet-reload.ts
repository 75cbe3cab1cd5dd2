/**
 * The fleet's configuration kept in step with the store: reloads (serialized, with what
 * the last one found, for /health and metrics) and the watch that triggers them (the
 * registry poll every REGISTRY_POLL_MS, plus, on PostgreSQL, a LISTEN wake-up when any
 * writer changes the bots).
 */
import type { Logger } from 'pino';
import { errorMessage } from '../../common/errors.js';
import type { Store } from '../store/store.js';
import type { BotsApiPoller } from '../store/bots-api-source.js';
import type { Supervisor } from './supervisor.js';

/** The fleet's reload from the registry, and what the last one found. */
export interface FleetReloader {
  /** Read the store's bots and reconcile the fleet (SIGHUP, `reload`, a registry or bots API change). @throws the store's error (kept as a failed reload) */
  reload(): Promise<{ bots: number; invalid: number }>;
  /** Enabled bots whose token the key cannot decrypt (a wrong or partial key): /health is 503 while there are any. */
  undecryptable(): string[];
  /** `botfleet_config_last_reload_success`: the last registry read and, with BOTS_API_URL, the last poll; wall-clock ms of the last time both were good. */
  health(api: BotsApiPoller | null): { success: boolean; lastSuccessMs: number | null };
  /**
   * Check the store for changed bots every `pollMs` and when woken (store.watchBots: at once
   * on PostgreSQL), one check at a time (a wake-up during a check makes one more after it);
   * reload on a change. A failed check is logged. @returns its stop
   */
  watch(logger: Logger, pollMs: number): () => void;
  /** Why the store could not be read at the last check or reload (for /health), else null. */
  storeProblem(): string | null;
}

/**
 * The fleet's reloads from the store. `beforeReconcile` runs on the specs first (the uid
 * slots of new bots allocated). Reloads are serialized: one asked for while one runs
 * follows it.
 */
export function fleetReloader(store: Store, supervisor: Supervisor, beforeReconcile: (ids: string[]) => Promise<void> = async () => undefined): FleetReloader {
  const last = { ok: false, atMs: null as number | null, undecryptable: [] as string[], problem: null as string | null };
  let chain: Promise<unknown> = Promise.resolve();
  const once = async () => {
    let loaded: Awaited<ReturnType<Store['bots']['load']>>;
    try {
      loaded = await store.bots.load();
      await beforeReconcile(loaded.specs.map((b) => b.id));
    } catch (err) {
      last.ok = false;
      last.problem = `the store cannot be read: ${errorMessage(err)}`;
      throw err;
    }
    Object.assign(last, { ok: true, atMs: Date.now(), problem: null });
    const { specs, invalid } = loaded;
    last.undecryptable = invalid.filter((b) => b.enabled && b.reason.includes('cannot be decrypted')).map((b) => b.id);
    supervisor.reconcile(specs, invalid);
    return { bots: specs.length, invalid: invalid.length };
  };
  const reload = () => {
    const run = chain.then(once, once);
    chain = run.catch(() => undefined);
    return run;
  };
  return {
    reload,
    watch: (logger, pollMs) => watchStore(store, reload, logger, pollMs, (p) => (last.problem = p)),
    storeProblem: () => last.problem,
    undecryptable: () => last.undecryptable,
    health(api) {
      const polled = api?.outcome();
      const times = [last.atMs, polled ? polled.lastSuccessMs : last.atMs];
      return { success: last.ok && (polled?.success ?? true), lastSuccessMs: times.some((t) => t === null) ? null : Math.min(...(times as number[])) };
    },
  };
}

/** {@link FleetReloader.watch}; `setProblem` gets each check's outcome (null: read fine). */
function watchStore(store: Store, reload: () => Promise<unknown>, logger: Logger, pollMs: number, setProblem: (p: string | null) => void): () => void {
  let checking = false;
  let again = false;
  const check = (): void => {
    if (checking) return void (again = true);
    checking = true;
    void (async () => {
      if (await store.bots.changedSinceLastCheck()) await reload();
      else setProblem(null);
    })().catch((err: unknown) => {
      setProblem(`the store cannot be read: ${errorMessage(err)}`);
      logger.error({ err: errorMessage(err) }, 'registry poll failed');
    }).finally(() => {
      checking = false;
      if (again) (again = false), check();
    });
  };
  const timer = setInterval(check, pollMs);
  const unwatch = store.watchBots(check);
  return () => {
    clearInterval(timer);
    void unwatch();
  };
}

/** `botfleet store copy`: a one-machine home into PostgreSQL (master/store/copy.ts). */
import type { Command } from 'commander';
import { ErrorCodes, fail } from '../common/errors.js';
import { homePaths, loadConfig } from '../config/load.js';
import { readLivePid } from '../master/host/pid-file.js';
import { copyHomeToPg } from '../master/store/copy.js';
import { checkPgUrl } from '../master/store/pg/connect.js';

/** Register `store copy` on `program`; `home()` is the global `--home`. */
export function registerStoreCommands(program: Command, home: () => string | undefined): void {
  const store = program.command('store').description('the store: SQLite in the home, or PostgreSQL at DATABASE_URL');
  store.command('copy')
    .description("copy this home's bots, history, dead letters and pending journal into PostgreSQL (idempotent; refuses a database holding another fleet)")
    .option('--to <url>', 'postgres://user@host:port/database; the password from PGPASSWORD (on the command line it would show in ps). Default: DATABASE_URL')
    .action(async (o: { to?: string }) => {
      const cfg = loadConfig(home() ? { home: home()! } : {});
      const url = o.to ?? cfg.databaseUrl;
      if (!url) throw fail(ErrorCodes.BAD_INPUT, 'store copy needs a target: --to postgres://user@host:port/database, or DATABASE_URL');
      checkPgUrl(url);
      const p = homePaths(cfg.home);
      const pid = readLivePid(p.pidFile);
      if (pid !== null) throw fail(ErrorCodes.BAD_INPUT, `the master of ${cfg.home} is running (pid ${pid}): stop it first, so the journal does not change during the copy`);
      const r = await copyHomeToPg(p, cfg.encryptionKey, url);
      console.log(`copied ${cfg.home} into ${r.target} (fleet ${r.fleetId}): ${r.bots} bot(s), ${r.uidSlots} uid slot(s), ${r.histories} restart histories, ${r.deadLetters} dead letter(s), ${r.pending} pending update(s), ${r.acked} acked id(s)`);
      console.log('next: start the master with DATABASE_URL set to this database (and the same BOTFLEET_ENCRYPTION_KEY or key file)');
    });
}

/** `botfleet cluster`: the members and who owns which bot, read from the store (any machine with DATABASE_URL). */
import type { Command } from 'commander';
import { table } from '../common/table.js';
import { withStore } from './bots.js';

/** Register `cluster` on `program`; `home()` is the global `--home`. */
export function registerClusterCommand(program: Command, home: () => string | undefined): void {
  program.command('cluster').description('the members of the cluster (id, epoch, last renewal, bots owned) and which member owns which bot')
    .option('--json', 'JSON output')
    .action((o: { json?: boolean }) => withStore(home(), async (store) => {
      if (!store.cluster) return void console.log('not a cluster: the store is SQLite in the home, and its master owns every bot (set DATABASE_URL for a cluster)');
      const [members, owners] = await Promise.all([store.cluster.liveMembers(), store.cluster.owners()]);
      if (o.json) return void console.log(JSON.stringify({ members, owners }, null, 2));
      const owned = (id: string, epoch: number) => owners.filter((r) => r.member === id && r.memberEpoch === epoch).length;
      console.log(table(['MEMBER', 'EPOCH', 'HOST', 'PID', 'RENEWED', 'BOTS'], members.map((m) => [m.id, String(m.epoch), m.host, String(m.pid), `${(m.renewedAgoMs / 1000).toFixed(1)} s ago`, String(owned(m.id, m.epoch))])));
      const live = new Set(members.map((m) => `${m.id}\u0000${m.epoch}`));
      console.log('');
      console.log(table(['BOT', 'OWNER', 'BOT EPOCH', 'SINCE', 'CAUSE'], owners.sort((a, b) => a.bot.localeCompare(b.bot)).map((r) => [
        r.bot, r.member === '' ? '(released)' : live.has(`${r.member}\u0000${r.memberEpoch}`) ? r.member : `${r.member} (dead)`, String(r.botEpoch), new Date(r.since).toISOString(), r.cause,
      ])));
    }));
}

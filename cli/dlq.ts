/**
 * `botfleet dlq ...`: the dead-letter queue (master/dead-letters.ts). `list` and `rm`
 * work on the database with or without a running master; `replay` needs the master,
 * which hands each update to its bot's running worker and removes it once acked.
 */
import type { Command } from 'commander';
import { homePaths, loadConfig } from '../config/load.js';
import { controlRequest } from '../master/surfaces/control-server.js';
import { withStore } from './bots.js';
import { table } from '../common/table.js';
import { usage } from './usage.js';

/** `<id>` or `--bot <botId>`, exactly one. @throws `BF_ERR_BAD_INPUT` */
function selection(id: string | undefined, bot: string | undefined, verb: string): { id: number } | { botId: string } {
  if ((id === undefined) === (bot === undefined)) throw usage(`dlq ${verb} needs a dead letter id or --bot <botId> (one of them)`);
  if (bot !== undefined) return { botId: bot };
  const n = Number(id);
  if (!Number.isSafeInteger(n) || n <= 0) throw usage(`dead letter id must be a positive whole number, got "${id}"`);
  return { id: n };
}

export function registerDlqCommands(program: Command, home: () => string | undefined): void {
  const dlq = program.command('dlq').description('the dead-letter queue: updates given up on after repeated worker deaths');
  dlq.command('list [botId]').description('dead letters, oldest first (ids, kinds and sizes; never message text)').option('--json', 'JSON output')
    .action(async (botId: string | undefined, o: { json?: boolean }) => {
      const rows = await withStore(home(), (s) => s.deadLetters.list(botId));
      if (o.json) return console.log(JSON.stringify(rows, null, 2));
      if (rows.length === 0) return console.log(botId ? `no dead letters for bot "${botId}"` : 'no dead letters');
      console.log(table(['ID', 'BOT', 'UPDATE_ID', 'KIND', 'BYTES', 'AT', 'REPLAYS', 'LAST RESULT', 'REASON'],
        rows.map((d) => [String(d.id), d.botId, String(d.updateId), d.kind, String(d.bytes), new Date(d.at).toISOString(), String(d.replays), d.lastResult ?? '-', d.reason])));
    });
  dlq.command('replay [id]').description('hand dead letters to their running workers again; acked ones are removed').option('--bot <botId>', "every dead letter of this bot")
    .action(async (id: string | undefined, o: { bot?: string }) => {
      const sel = selection(id, o.bot, 'replay');
      const res = (await controlRequest(homePaths(loadConfig(home() ? { home: home() } : {}).home).socket, { cmd: 'dlq-replay', ...sel })) as { replayed: number; kept: Array<{ id: number; result: string }> };
      console.log(`replayed ${res.replayed}${res.kept.length ? `; kept ${res.kept.map((k) => `${k.id} (${k.result})`).join(', ')}` : ''}`);
      if (res.kept.length > 0) process.exitCode = 1;
    });
  dlq.command('take').description("move a stopped (disabled or removed) bot's journaled, undelivered webhook updates into the dead-letter queue")
    .requiredOption('--bot <botId>', 'the bot')
    .action(async (o: { bot: string }) => {
      const res = (await controlRequest(homePaths(loadConfig(home() ? { home: home() } : {}).home).socket, { cmd: 'dlq-take', botId: o.bot })) as { taken: number };
      console.log(`moved ${res.taken} to the dead-letter queue`);
    });
  dlq.command('rm [id]').description('forget dead letters').option('--bot <botId>', "every dead letter of this bot")
    .action(async (id: string | undefined, o: { bot?: string }) => {
      const n = await withStore(home(), (s) => s.deadLetters.remove(selection(id, o.bot, 'rm')));
      console.log(`removed ${n}`);
    });
}

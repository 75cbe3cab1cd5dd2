/** `botfleet bots ...`: edit the registry, with or without a running master (it notices within REGISTRY_POLL_MS). */
import fs from 'node:fs';
import type { Command } from 'commander';
import { ErrorCodes, fail } from '../common/errors.js';
import { loadConfig } from '../config/load.js';
import { maskToken } from '../config/secrets.js';
import type { BotModeSetting } from '../master/store/registry.js';
import { openStore } from '../master/store/open.js';
import type { Store } from '../master/store/store.js';
import { table } from '../common/table.js';
import { handlerWarning } from '../master/host/bot-paths.js';
import { canChangeUser } from '../master/host/isolation.js';
import { isBuiltinHandler } from '../worker/handlers/index.js';
import { importBots, importReport, readImport } from './bots-import.js';

/** Run `fn` on the home's store (the CLI's own connection, through the same interfaces as the master's; closed after). */
export async function withStore<T>(home: string | undefined, fn: (s: Store) => Promise<T>): Promise<T> {
  const cfg = loadConfig(home ? { home } : {});
  const s = await openStore(cfg, { poolSize: 2 });
  try {
    return await fn(s);
  } finally {
    await s.close();
  }
}

/** Parse `--settings` JSON. @throws `BF_ERR_BAD_INPUT` with a one-line reason. */
function parseSettings(raw: string | undefined): Record<string, unknown> | undefined {
  if (raw === undefined) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    throw fail(ErrorCodes.BAD_INPUT, '--settings is not valid JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw fail(ErrorCodes.BAD_INPUT, '--settings must be a JSON object');
  return v as Record<string, unknown>;
}

/** The token from `--token`, or from stdin with `--token -` (keeps it out of `ps` and shell history). */
function readToken(raw: string): string {
  return (raw === '-' ? fs.readFileSync(0, 'utf8') : raw).trim();
}

/** Say at once what the fork would find: a handler the bot's own uid cannot read (stderr; the command still succeeds). */
function warnHandler(handler: string, home: string | undefined): void {
  let w: string | null;
  try {
    w = handlerWarning(handler, loadConfig(home ? { home } : {}).home, canChangeUser(), isBuiltinHandler);
  } catch {
    return; // a bad setting is the master's to report at start
  }
  if (w) console.error(`botfleet: warning: ${w}`);
}

const mode = (m: string | undefined): BotModeSetting | undefined => (m === undefined ? undefined : m === 'default' ? null : (m as BotModeSetting));

export function registerBotsCommands(program: Command, home: () => string | undefined): void {
  const bots = program.command('bots').description('manage the bot registry');
  bots.command('add').description('add a bot (prints its id)')
    .requiredOption('--name <name>', 'display name (the id is derived from it)')
    .requiredOption('--token <token>', "the bot's token from @BotFather, or - to read it from stdin")
    .option('--id <id>', 'explicit id ([a-z0-9_-])')
    .option('--mode <mode>', 'polling, webhook, auto (default: the master default)')
    .option('--handler <handler>', 'built-in (echo, autoreply, handoff) or path to an ES module', 'echo')
    .option('--settings <json>', 'settings JSON object passed to the handler')
    .option('--api-root <url>', 'Bot API root for this bot (self-hosted server or emulator)')
    .action(async (o: { name: string; token: string; id?: string; mode?: string; handler: string; settings?: string; apiRoot?: string }) => {
      const id = await withStore(home(), (s) => s.bots.add({
        name: o.name, token: readToken(o.token), handler: o.handler, mode: mode(o.mode) ?? null,
        settings: parseSettings(o.settings) ?? {}, apiRoot: o.apiRoot ?? null, ...(o.id ? { id: o.id } : {}),
      }));
      warnHandler(o.handler, home());
      console.log(id);
    });
  bots.command('list').description('list bots (tokens masked)').option('--json', 'JSON output').action(async (o: { json?: boolean }) => {
    const rows = await withStore(home(), async (st) => {
      const { specs, invalid } = await st.bots.load();
      const masked = new Map(specs.map((s) => [s.id, maskToken(s.token)]));
      const problems = new Map(invalid.map((b) => [b.id, b.reason]));
      return (await st.bots.list()).map((b) => ({ ...b, token: masked.get(b.id) ?? '(unreadable)', problem: problems.get(b.id) ?? null }));
    });
    if (o.json) return console.log(JSON.stringify(rows, null, 2));
    console.log(table(['ID', 'NAME', 'ENABLED', 'MODE', 'HANDLER', 'SOURCE', 'TOKEN', 'PROBLEM'],
      rows.map((b) => [b.id, b.name, b.enabled ? 'yes' : 'no', b.mode ?? 'default', b.handler, b.source, b.token, b.problem ?? ''])));
  });
  bots.command('import <file>').description('add or change many bots from a file (- for stdin): the bots API\'s document, JSON or NDJSON; one transaction, a report')
    .option('--json', 'the report as JSON')
    .action(async (file: string, o: { json?: boolean }) => {
      const text = readImport(file);
      const r = await withStore(home(), (s) => importBots(s, text));
      console.log(o.json ? JSON.stringify(r, null, 2) : importReport(r));
    });
  bots.command('rm <id>').description('remove a bot (its worker is stopped)').action((id: string) => withStore(home(), (s) => s.bots.remove(id)));
  bots.command('enable <id>').description('enable a bot').action((id: string) => withStore(home(), (s) => s.bots.setEnabled(id, true)));
  bots.command('disable <id>').description('disable a bot (its worker is stopped)').action((id: string) => withStore(home(), (s) => s.bots.setEnabled(id, false)));
  bots.command('set <id>').description('change a bot; settings reach the running worker without a restart')
    .option('--name <name>').option('--token <token>', 'new token, or - for stdin').option('--mode <mode>', 'polling, webhook, auto or default')
    .option('--handler <handler>').option('--settings <json>').option('--api-root <url>')
    .action(async (id: string, o: { name?: string; token?: string; mode?: string; handler?: string; settings?: string; apiRoot?: string }) => {
      await withStore(home(), (s) => s.bots.update(id, {
        ...(o.name !== undefined ? { name: o.name } : {}), ...(o.token !== undefined ? { token: readToken(o.token) } : {}),
        ...(o.mode !== undefined ? { mode: mode(o.mode) } : {}), ...(o.handler !== undefined ? { handler: o.handler } : {}),
        ...(o.settings !== undefined ? { settings: parseSettings(o.settings) } : {}), ...(o.apiRoot !== undefined ? { apiRoot: o.apiRoot } : {}),
      }));
      if (o.handler !== undefined) warnHandler(o.handler, home());
    });
}

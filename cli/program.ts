/**
 * The `botfleet` command line (commander), run by cli/main.ts. Exit codes: 0 ok; 1 a failure with a
 * one-line reason on stderr; 2 bad usage; 78 (EX_CONFIG, sysexits.h) a configuration error that a
 * restart cannot fix, so systemd's `RestartPreventExitStatus=78` and PM2's `stop_exit_codes` stop there.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { constants as osConstants } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError, Option } from 'commander';
import { BotfleetError, ErrorCodes, fail } from '../common/errors.js';
import { homePaths, loadConfig, type FlagValues } from '../config/load.js';
import { SETTINGS } from '../config/settings.js';
import { controlRequest } from '../master/surfaces/control-server.js';
import type { FleetStatus } from '../master/surfaces/status-server.js';
import type { RollSummary } from '../master/lifecycle/supervisor.js';
import { registerBotsCommands } from './bots.js';
import { registerDlqCommands } from './dlq.js';
import { registerStoreCommands } from './store.js';
import { registerClusterCommand } from './cluster.js';
import { statusTable } from '../master/surfaces/status-table.js';
import type { BotDescription } from '../master/lifecycle/supervisor.js';
import { describeText, logFiles, registryPart } from './describe.js';
import { colour, watchStatus } from './watch.js';
import { withStore } from './bots.js';
import { daemonize, dryRun } from './lifecycle.js';
import { stopMaster, stopSummary } from './stop.js';
import { LEVELS, parseDuration, showAllLogs, showLogs } from './logs.js';
import { VERSION } from '../common/version.js';
import { usage, USAGE } from './usage.js';
import { linkHelpToDocs } from './doc-links.js';
import { startupSystemd, UNIT_PATH } from './startup.js';
import { EXIT_CONFIG } from '../worker/protocol.js';

/** Errors a restart cannot fix: the command exits {@link EXIT_CONFIG}. */
const CONFIG_ERRORS = new Set<string>([ErrorCodes.CONFIG, ErrorCodes.KEY_MISSING, ErrorCodes.CRYPTO]);

const program = new Command('botfleet')
  .description('a process supervisor for fleets of Telegram bots')
  .version(VERSION, '-V, --version')
  .option('--home <dir>', 'botfleet home (data/, logs/, run/); default $BOTFLEET_HOME or the working directory')
  .exitOverride()
  .showHelpAfterError();
const home = () => program.opts<{ home?: string }>().home;
const config = (flags: FlagValues = {}) => loadConfig({ ...(home() ? { home: home() } : {}), ...flags });

const start = program.command('start').description('run the master (foreground by default)')
  .option('--daemon', 'run in the background')
  .option('--dry-run', 'validate configuration and registry, print what would start, exit');
for (const s of SETTINGS) if (s.key !== 'home' && s.flag) start.addOption(new Option(`--${s.flag} <value>`, `${s.doc} [${s.env}]`));
start.action(async (o: Record<string, string | boolean | undefined>) => {
  const flags: FlagValues = {};
  for (const s of SETTINGS) {
    if (!s.flag) continue;
    const v = o[s.flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase())];
    if (typeof v === 'string') flags[s.key] = v;
  }
  const cfg = config(flags);
  if (o.dryRun) process.exit(await dryRun(cfg));
  if (o.daemon) {
    console.log(`botfleet started in the background (pid ${await daemonize(cfg, process.argv.slice(3))})`);
    return;
  }
  const { runMaster } = await import('../master/main.js');
  await runMaster(cfg);
});

program.command('stop').description('stop the master (SIGTERM) and wait for it to exit').action(async () => {
  // Progress on stderr, the summary on stdout.
  console.log(stopSummary(await stopMaster(config(), (line) => process.stderr.write(`${line}\n`))));
});

program.command('restart [botId]').description('rolling restart of every bot, or restart one (also out of quarantine)').action(async (botId?: string) => {
  // A rolling restart of a large fleet takes minutes: the answer comes when it is done.
  const r = (await controlRequest(homePaths(config().home).socket, { cmd: 'restart', ...(botId ? { botId } : {}) }, 3_600_000)) as RollSummary;
  const skipped = r.skipped.map((x) => `${x.botId}: ${x.why}`).join(', ');
  if (botId && r.restarted.length === 0) throw fail(ErrorCodes.CONTROL, `bot ${botId} was restarted but is ${r.skipped[0]?.why ?? 'not running'}`);
  // A bot restarted that did not come back (in backoff, or not settled in time) fails the roll: ExecReload reports it.
  const failed = r.skipped.filter((x) => x.why === 'backoff' || x.why === 'timeout');
  if (!botId && failed.length > 0) throw fail(ErrorCodes.CONTROL, `rolling restart failed: ${failed.length} bot(s) did not come back (${failed.map((x) => `${x.botId}: ${x.why}`).join(', ')}); ${r.restarted.length} restarted`);
  console.log(botId ? `bot ${botId} restarted` : `rolling restart done: ${r.restarted.length} restarted, ${r.skipped.length} skipped${skipped ? ` (${skipped})` : ''}`);
});

/** The fleet's status from the running master. @throws BF_ERR_NOT_RUNNING when there is none */
const fetchStatus = async () => (await controlRequest(homePaths(config().home).socket, { cmd: 'status' })) as FleetStatus;

program.command('status').description('the fleet as a table').option('--json', 'JSON output')
  .option('-w, --watch', 'redraw every second until interrupted (like watch / pm2 monit)')
  .action(async (o: { json?: boolean; watch?: boolean }) => {
    if (o.watch) return watchStatus(fetchStatus);
    let s: FleetStatus;
    try {
      s = await fetchStatus();
    } catch (err) {
      // LSB: `status` exits 3 when the program is not running.
      if (err instanceof BotfleetError && err.code === ErrorCodes.NOT_RUNNING) {
        console.error(`botfleet: ${err.message}`);
        process.exit(3);
      }
      throw err;
    }
    console.log(o.json ? JSON.stringify(s, null, 2) : statusTable(s, colour()));
  });

program.command('describe <botId>').description('everything known about one bot (config without secrets, state history, exits, logs)')
  .option('--json', 'JSON output').action(async (botId: string, o: { json?: boolean }) => {
    const reg = await withStore(home(), (st) => registryPart(st, botId));
    let live: BotDescription | null = null;
    try {
      live = (await controlRequest(homePaths(config().home).socket, { cmd: 'describe', botId })) as BotDescription;
    } catch (err) {
      if (!(err instanceof BotfleetError && err.code === ErrorCodes.NOT_RUNNING)) throw err;
    }
    const logs = logFiles(homePaths(config().home).logs, botId);
    console.log(o.json ? JSON.stringify({ registry: reg, ...(live ?? {}), logFiles: logs }, null, 2) : describeText(reg, live, logs));
  });

program.command('logs [botId]').description("the master's log, or a bot's").option('-f, --follow', 'keep printing new lines (across rotation)')
  .option('-n, --lines <n>', 'lines to show', '50').option('--level <level>', `lines at this level or above (${Object.keys(LEVELS).join(', ')})`)
  .option('--since <duration>', 'lines of the last duration only (500ms, 90s, 10m, 2h, 1d)')
  .option('--json', 'JSON lines as stored').option('--raw', 'the same as --json')
  .option('--all', "the master's and every bot's log, interleaved by time, each line with its botId")
  .action(async (botId: string | undefined, o: { all?: boolean; follow?: boolean; lines: string; raw?: boolean; json?: boolean; level?: string; since?: string }) => {
    const lines = Number(o.lines);
    if (!/^\d+$/.test(o.lines) || !Number.isSafeInteger(lines)) throw usage(`-n/--lines must be a whole number >= 0, got "${o.lines}"`);
    const minLevel = o.level === undefined ? 0 : LEVELS[o.level];
    if (minLevel === undefined) throw usage(`--level must be one of ${Object.keys(LEVELS).join(', ')}, got "${o.level}"`);
    const since = o.since === undefined ? null : parseDuration(o.since);
    if (o.since !== undefined && since === null) throw usage(`--since must be a duration such as 90s, 10m, 2h or 1d, got "${o.since}"`);
    if (o.all && botId) throw usage('logs takes a bot id or --all, not both');
    const opts = { lines, follow: o.follow === true, json: o.json === true || o.raw === true, filter: { minLevel, sinceMs: since === null ? null : Date.now() - since } };
    await (o.all ? showAllLogs(homePaths(config().home).logs, opts) : showLogs(homePaths(config().home).logs, botId, opts));
  });

registerBotsCommands(program, home);
registerDlqCommands(program, home);
registerStoreCommands(program, home);
registerClusterCommand(program, home);

program.command('startup <system>').description('print the systemd unit for this installation and home (as pm2 startup); --install writes it')
  .option('--user <name>', 'the user the master runs as (default: botfleet as root, else you)')
  .option('--install', `write it to ${UNIT_PATH} (root)`)
  .action((system: string, o: { user?: string; install?: boolean }) => {
    if (system !== 'systemd') throw usage(`startup knows systemd, got "${system}"`);
    console.log(startupSystemd(config().home, o).trimEnd());
  });

program.command('demo').description('the whole system offline: emulator, bots, users, a crash and its recovery')
  .option('--cluster', 'three masters on a throwaway PostgreSQL (from this machine\'s binaries), one SIGKILLed and its bots taken over')
  .action(async (o: { cluster?: boolean }) => {
  // The demo is a program of its own (scripts/), started beside the CLI, not linked into it.
  const demo = spawn(process.execPath, [fileURLToPath(new URL(o.cluster ? '../scripts/demo-cluster.js' : '../scripts/demo.js', import.meta.url))], { stdio: 'inherit' });
  const [code, signal] = (await once(demo, 'exit')) as [number | null, NodeJS.Signals | null];
  process.exitCode = code ?? (signal ? 128 + (osConstants.signals[signal] ?? 0) : 1);
});

linkHelpToDocs(program);

try {
  await program.parseAsync();
} catch (err) {
  if (err instanceof CommanderError) {
    if (err.code === USAGE) console.error(`botfleet: ${err.message}`);
    process.exit(err.exitCode === 0 ? 0 : 2);
  }
  const message = err instanceof BotfleetError || err instanceof Error ? err.message : String(err);
  // The catalog code ends the message, so a script can branch on it without parsing the text.
  for (const line of (err instanceof BotfleetError ? `${message} (${err.code})` : message).split('\n')) console.error(`botfleet: ${line}`);
  process.exit(err instanceof BotfleetError && CONFIG_ERRORS.has(err.code) ? EXIT_CONFIG : 1);
}

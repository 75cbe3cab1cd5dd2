/** `botfleet start` helpers: dry run and daemonizing (`stop` is cli/stop.ts). */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { ErrorCodes, fail } from '../common/errors.js';
import { homePaths, type Config } from '../config/load.js';
import { isBuiltinHandler } from '../worker/handlers/index.js';
import { readLivePid } from '../master/host/pid-file.js';
import { openStore, storeWhere } from '../master/store/open.js';

/** Print which bots would start and how. @returns the exit code: 0 all good, 1 some bot is invalid. */
export async function dryRun(cfg: Config): Promise<number> {
  const store = await openStore(cfg, { poolSize: 2 });
  const { specs, invalid } = await store.bots.load().finally(() => store.close());
  let bad = 0;
  console.log(`configuration OK (home ${cfg.home}, store ${storeWhere(cfg)}, mode ${cfg.mode})`);
  for (const s of specs) {
    const wanted = s.mode ?? cfg.mode;
    const mode = wanted === 'auto' ? (cfg.webhookHost ? 'webhook' : 'polling') : wanted;
    const handlerProblem = !isBuiltinHandler(s.handler) && !fs.existsSync(new URL(s.handler, `file://${cfg.home}/`)) ? `handler file ${s.handler} not found` : null;
    const fallback = mode === 'webhook' && !cfg.webhookHost ? (cfg.autoSwitchMode ? ' (no WEBHOOK_HOST: would fall back to polling)' : ' (no WEBHOOK_HOST: cannot start)') : '';
    if (!s.enabled) console.log(`- ${s.id}: disabled, would not start`);
    else if (handlerProblem) {
      bad++;
      console.log(`- ${s.id}: INVALID: ${handlerProblem}`);
    } else console.log(`- ${s.id}: would start in ${mode} mode with handler ${s.handler}${fallback}`);
  }
  for (const b of invalid) {
    bad++;
    console.log(`- ${b.id}: INVALID: ${b.reason}`);
  }
  if (specs.length + invalid.length === 0) console.log('no bots configured (add one with: botfleet bots add --name N --token T)');
  return bad > 0 ? 1 : 0;
}

/** Start a master in the background and wait until it answers. @returns its pid. */
export async function daemonize(cfg: Config, argv: string[]): Promise<number> {
  const p = homePaths(cfg.home);
  fs.mkdirSync(p.logs, { recursive: true });
  const out = fs.openSync(`${p.logs}/master.out`, 'a');
  const entry = fileURLToPath(new URL('./main.js', import.meta.url));
  const child = spawn(process.execPath, [entry, 'start', ...argv.filter((a) => a !== '--daemon')], { detached: true, stdio: ['ignore', out, out], env: process.env });
  child.unref();
  for (const deadline = Date.now() + 15_000; Date.now() < deadline; await sleep(100)) {
    if (fs.existsSync(p.socket) && readLivePid(p.pidFile) === child.pid) return child.pid!;
    if (child.exitCode !== null) throw fail(ErrorCodes.IPC_CHILD_EXITED, `the master exited with code ${child.exitCode} before it came up; see ${p.logs}/master.out`);
  }
  throw fail(ErrorCodes.NOT_RUNNING, `the master did not come up within 15 s; see ${p.logs}/master.out`);
}

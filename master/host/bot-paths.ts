/**
 * The paths a bot's uid must pass and the directories it is given (host/isolation.ts's
 * file-system side): which path blocks another uid, what a handler may read, the home
 * prepared for per-bot uids, and a bot's own directory handed over.
 */
import fs from 'node:fs';
import path from 'node:path';

/**
 * The first path on the way to `file` that a uid with no relation to its owners
 * cannot pass: a directory without o+x, or the file itself without o+r. Mode
 * bits only (ACLs are not read). @returns null when the whole path is open to others.
 */
export function blockingPath(file: string): string | null {
  const abs = path.resolve(file);
  const parts = abs.split(path.sep).filter(Boolean);
  let cur: string = path.sep;
  for (let i = 0; i <= parts.length; i++) {
    let st: fs.Stats;
    try {
      st = fs.statSync(cur);
    } catch {
      return cur;
    }
    const last = i === parts.length;
    if (st.isDirectory() && (st.mode & 0o001) === 0) return cur;
    if (last && !st.isDirectory() && (st.mode & 0o004) === 0) return cur;
    if (!last) cur = path.join(cur, parts[i]!);
  }
  return null;
}

/**
 * Make `dir` the bot uid's, mode 0700: the mode set while the master still owns it, then
 * the owner, so the master needs CAP_CHOWN but not CAP_FOWNER (the systemd unit's
 * exposure: a master that may chmod anything may override file permissions).
 */
export function giveDirectory(dir: string, uid: number): void {
  const st = fs.statSync(dir);
  if (st.uid === uid) return;
  if (st.uid === process.getuid?.()) fs.chmodSync(dir, 0o700);
  fs.chownSync(dir, uid, uid);
}

/**
 * What a handler may read: its directory, unless that directory holds the home's
 * secrets (a handler file placed directly in the home, or above it): then only the file.
 */
export function handlerReadScope(handlerFile: string, home: string): string {
  const dir = path.dirname(handlerFile);
  const rel = path.relative(dir, path.join(home, 'data'));
  return rel.startsWith('..') || path.isAbsolute(rel) ? dir : handlerFile;
}

/**
 * The home for per-bot uids: the master's own directories closed (0700), the home
 * itself passable (o+x, not listable) so a worker reaches `bots/<botId>/`, and
 * `bots/` passable only.
 */
export function prepareHome(home: string, botsDir: string): void {
  for (const dir of ['data', 'run', 'logs']) {
    const p = path.join(home, dir);
    fs.mkdirSync(p, { recursive: true, mode: 0o700 });
    fs.chmodSync(p, 0o700);
  }
  const st = fs.statSync(home);
  if ((st.mode & 0o001) === 0) fs.chmodSync(home, (st.mode & 0o7777) | 0o001);
  fs.mkdirSync(botsDir, { recursive: true, mode: 0o711 });
  fs.chmodSync(botsDir, 0o711);
}

/**
 * The warning `bots add`/`bots set` print when the bot's own uid will not be able to read
 * its handler (the same check the fork path makes, which then quarantines the bot with
 * reason `config`). @returns null when it can, when the handler is a built-in, or when
 * per-bot uids will not apply (`perBotUids` false)
 */
export function handlerWarning(handler: string, home: string, perBotUids: boolean, builtin: (h: string) => boolean): string | null {
  if (!perBotUids || builtin(handler)) return null;
  const file = path.resolve(home, handler);
  if (!fs.existsSync(file)) return `handler ${file} does not exist: the bot will be quarantined (config) until it does`;
  const blocked = blockingPath(file);
  return blocked ? `the bot's own uid cannot read its handler: ${blocked} is closed to other users; it will be quarantined (config) until it is readable (o+rx on the directories, o+r on the files)` : null;
}

/**
 * A throwaway PostgreSQL server from the machine's own binaries (PostgreSQL 15 on these
 * machines: `pg_config --bindir`, or /usr/lib/postgresql/<v>/bin), for the tests, the
 * cluster demo and the benchmarks. `initdb` and `postgres` refuse to run as root, so as
 * root they run as `nobody` (util-linux `setpriv`) on a temporary directory that user owns,
 * listening on 127.0.0.1 and a free port, with password authentication (scram-sha-256)
 * for one superuser. `stop()` ends it and removes the directory.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from '../common/free-port.js';

/** The directory holding `initdb` and `postgres`, or null when PostgreSQL's server is not installed. */
export function postgresBinDir(): string | null {
  const configured = spawnSync('pg_config', ['--bindir'], { encoding: 'utf8' });
  const candidates = configured.status === 0 ? [configured.stdout.trim()] : [];
  try {
    const versions = fs.readdirSync('/usr/lib/postgresql').filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
    candidates.push(...versions.map((v) => `/usr/lib/postgresql/${v}/bin`));
  } catch {
    // no Debian layout
  }
  return candidates.find((d) => fs.existsSync(path.join(d, 'initdb')) && fs.existsSync(path.join(d, 'postgres'))) ?? null;
}

/** How to install the server where it is missing (one line, for skips and the demo). */
export const POSTGRES_MISSING = "PostgreSQL's server binaries (initdb, postgres) are not installed: apt-get install postgresql";

/** A running throwaway server. `url` carries the password: never log it. */
export interface LocalPostgres {
  url: string;
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  /** Stop the server, keeping its data (a database outage). */
  pause(): Promise<void>;
  /** Start it again on the same port and data. */
  resume(): Promise<void>;
  /** Run SQL with psql in `db` (default `postgres`); the output's rows, `|`-separated. @throws on a psql error */
  psql(sql: string, db?: string): string;
  /** Stop it and remove its directory. */
  stop(): Promise<void>;
}

const asRoot = () => process.getuid?.() === 0;

/** `nobody`'s uid and gid. */
function nobody(): { uid: number; gid: number } {
  const id = (flag: string) => Number(spawnSync('id', [flag, 'nobody'], { encoding: 'utf8' }).stdout.trim());
  return { uid: id('-u'), gid: id('-g') };
}

/**
 * `cmd args` as the server's user (`nobody` under root, else ourselves), through util-linux
 * `setpriv`, which execs: the process spawned is the server itself, so its signals reach it
 * (`runuser` would stand between, and keep a SIGINT for itself).
 */
function asServerUser(cmd: string, args: string[]): [string, string[]] {
  if (!asRoot()) return [cmd, args];
  const { uid, gid } = nobody();
  return ['setpriv', [`--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', '--', cmd, ...args]];
}

/**
 * Start a server; `fsync` (default off, for tests: a commit then survives a process crash,
 * not power loss) on for benchmarks that compare durable commits.
 * @throws Error with POSTGRES_MISSING when the binaries are not there, or
 * with initdb's or the server's own words when it does not start within 20 s
 */
export async function startLocalPostgres(o: { fsync?: boolean } = {}): Promise<LocalPostgres> {
  const bin = postgresBinDir();
  if (!bin) throw new Error(POSTGRES_MISSING);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'botfleet-pg-'));
  const data = path.join(dir, 'data');
  const user = 'botfleet';
  const password = randomBytes(18).toString('base64url');
  fs.writeFileSync(path.join(dir, 'pw'), password + '\n', { mode: 0o600 });
  if (asRoot()) {
    fs.chmodSync(dir, 0o700);
    const { uid, gid } = nobody();
    fs.chownSync(dir, uid, gid);
    fs.chownSync(path.join(dir, 'pw'), uid, gid);
  }
  const [cmd, args] = asServerUser(path.join(bin, 'initdb'), ['-D', data, '-U', user, '--pwfile', path.join(dir, 'pw'), '-A', 'scram-sha-256', '-E', 'UTF8', '--no-sync', '--locale=C']);
  const init = spawnSync(cmd, args, { encoding: 'utf8', cwd: dir });
  if (init.status !== 0) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw new Error(`initdb failed: ${(init.stderr || init.stdout).trim().split('\n').slice(-2).join(' ')}`);
  }
  fs.rmSync(path.join(dir, 'pw'), { force: true });
  const port = await freePort();
  let server: ChildProcess | null = null;
  const start = async () => {
    if (server && server.exitCode === null && server.signalCode === null) return; // running already
    const [c, a] = asServerUser(path.join(bin, 'postgres'), ['-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', `fsync=${o.fsync ? 'on' : 'off'}`, '-c', 'max_connections=200']);
    const p = spawn(c, a, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    p.stderr!.on('data', (b: Buffer) => (log = (log + b.toString()).slice(-4000)));
    server = p;
    await waitReady(bin, port, p, () => log);
  };
  const halt = async () => {
    const p = server;
    server = null;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = once(p, 'exit');
    p.kill('SIGINT'); // PostgreSQL's fast shutdown
    await exited;
  };
  await start();
  const database = 'postgres';
  return {
    url: `postgres://${user}:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`, host: '127.0.0.1', port, user, password, database,
    pause: halt,
    resume: start,
    psql(sql, db = database) {
      const r = spawnSync('psql', ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', String(port), '-U', user, '-d', db, '-c', sql], { encoding: 'utf8', env: { ...process.env, PGPASSWORD: password } });
      if (r.status !== 0) throw new Error(`psql: ${r.stderr.trim()}`);
      return r.stdout.trim();
    },
    async stop() {
      await halt();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Until `pg_isready` says the server accepts connections; fails fast when the server exits, or after 20 s. */
async function waitReady(bin: string, port: number, p: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (p.exitCode !== null || p.signalCode !== null) throw new Error(`postgres exited: ${log().trim().split('\n').slice(-2).join(' ')}`);
    const r = spawnSync(path.join(bin, 'pg_isready'), ['-q', '-h', '127.0.0.1', '-p', String(port)]);
    if (r.status === 0) return;
    if (Date.now() > deadline) {
      p.kill('SIGKILL');
      throw new Error(`postgres did not accept connections within 20 s: ${log().trim().split('\n').slice(-2).join(' ')}`);
    }
    await sleep(50);
  }
}

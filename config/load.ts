/**
 * Configuration loading: defaults < environment < CLI flags, validated once.
 * Every bad value yields one line naming the variable; all lines are reported
 * together in one {@link BotfleetError} with code `BF_ERR_CONFIG`.
 */
import path from 'node:path';
import { ErrorCodes, fail } from '../common/errors.js';
import { SETTINGS, type Config, type SettingDef } from './settings.js';
import { sourceAllowlist } from '../common/source-allowlist.js';
import { isLoopbackHost, parseStatusAuth } from '../common/status-auth.js';

export type { Config } from './settings.js';

/** Flag values as commander gives them: keyed by setting key, raw strings. */
export type FlagValues = Partial<Record<keyof Config, string>>;

/** The parsed value or a one-line problem. */
type Parsed = { ok: true; value: unknown } | { ok: false; problem: string };

function parseValue(def: SettingDef, raw: string): Parsed {
  const t = def.type;
  switch (t.kind) {
    case 'int': {
      if (!/^-?\d+$/.test(raw.trim())) return { ok: false, problem: `must be a whole number, got "${raw}"` };
      const n = Number(raw);
      if (n < t.min || (t.max !== undefined && n > t.max)) {
        return { ok: false, problem: `must be between ${t.min} and ${t.max ?? 'infinity'}, got ${n}` };
      }
      return { ok: true, value: n };
    }
    case 'bool': {
      const v = raw.trim().toLowerCase();
      if (['true', '1', 'yes', 'on'].includes(v)) return { ok: true, value: true };
      if (['false', '0', 'no', 'off'].includes(v)) return { ok: true, value: false };
      return { ok: false, problem: `must be true or false, got "${raw}"` };
    }
    case 'enum':
      return t.values.includes(raw) ? { ok: true, value: raw } : { ok: false, problem: `must be one of ${t.values.join(', ')}, got "${raw}"` };
    case 'url': {
      try {
        const u = new URL(raw);
        if (u.protocol !== 'http:' && u.protocol !== 'https:') return { ok: false, problem: `must be an http(s) URL, got "${raw}"` };
        return { ok: true, value: raw.replace(/\/+$/, '') };
      } catch {
        return { ok: false, problem: `must be a URL, got "${raw}"` };
      }
    }
    case 'string':
      return { ok: true, value: raw };
  }
}

/** Secrets are never echoed back in an error line. */
const SECRET_KEYS = new Set<keyof Config>(['webhookSecret', 'encryptionKey', 'statusAuth', 'botsApiUrl', 'botsApiToken', 'databaseUrl']);

/**
 * Build the configuration. `env` defaults to `process.env`, `flags` win over env.
 * @throws BotfleetError `BF_ERR_CONFIG`, message = one line per bad value.
 */
export function loadConfig(flags: FlagValues = {}, env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): Config {
  const out: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const def of SETTINGS) {
    const fromFlag = flags[def.key];
    const fromEnv = env[def.env];
    const raw = fromFlag ?? (fromEnv !== undefined && fromEnv !== '' ? fromEnv : undefined) ?? def.default;
    if (raw === undefined) {
      out[def.key] = undefined;
      continue;
    }
    const parsed = parseValue(def, raw);
    if (parsed.ok) out[def.key] = parsed.value;
    else {
      const source = fromFlag !== undefined ? `--${def.flag}` : def.env;
      problems.push(`${source} ${SECRET_KEYS.has(def.key) ? 'is invalid' : parsed.problem}`);
    }
  }
  const config = out as unknown as Config;
  if (problems.length === 0) problems.push(...crossCheck(config));
  if (problems.length > 0) throw fail(ErrorCodes.CONFIG, problems.join('\n'));
  config.home = path.resolve(cwd, config.home ?? '.');
  return config;
}

/** A comma-separated setting (WEBHOOK_ALLOWED_SOURCES, WEBHOOK_TRUST_PROXY) as a list; empty when unset. */
export const listSetting = (v: string | undefined): string[] => (v ?? '').split(',').map((x) => x.trim()).filter((x) => x !== '');

/** Rules between settings, each a one-line problem. */
function crossCheck(c: Config): string[] {
  const problems: string[] = [];
  if (c.heartbeatTimeoutMs <= c.heartbeatIntervalMs) {
    problems.push(`HEARTBEAT_TIMEOUT_MS (${c.heartbeatTimeoutMs}) must be greater than HEARTBEAT_INTERVAL_MS (${c.heartbeatIntervalMs})`);
  }
  if (c.restartCooldownMs < c.restartBackoffMs) {
    problems.push(`RESTART_COOLDOWN_MS (${c.restartCooldownMs}) must be at least RESTART_BACKOFF_MS (${c.restartBackoffMs})`);
  }
  if (!(c.clusterLeaseMs > c.clusterRenewDeadlineMs && c.clusterRenewDeadlineMs > 1.2 * c.clusterRetryMs)) {
    problems.push(`the cluster's timing must be CLUSTER_LEASE_MS (${c.clusterLeaseMs}) > CLUSTER_RENEW_DEADLINE_MS (${c.clusterRenewDeadlineMs}) > 1.2 x CLUSTER_RETRY_MS (${c.clusterRetryMs}), as Kubernetes leader election requires`);
  }
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(c.memberId)) problems.push(`MEMBER_ID must be 1-63 letters, digits, dots, dashes or underscores (got "${c.memberId.slice(0, 70)}")`);
  if (c.databaseUrl !== undefined && !/^postgres(ql)?:\/\/[^/?#]*[^/?#@:]/.test(c.databaseUrl)) {
    problems.push('DATABASE_URL must be postgres://user:password@host:port/database');
  }
  for (const [env, value] of [['WEBHOOK_ALLOWED_SOURCES', c.webhookAllowedSources], ['WEBHOOK_TRUST_PROXY', c.webhookTrustProxy]] as const) {
    if (value === undefined) continue;
    try {
      sourceAllowlist(listSetting(value));
    } catch (err) {
      problems.push(`${env}: ${(err as Error).message}`);
    }
  }
  if ((c.webhookSslCert === undefined) !== (c.webhookSslKey === undefined)) {
    problems.push('WEBHOOK_SSL_CERT and WEBHOOK_SSL_KEY must be set together');
  }
  if (c.statusAuth !== undefined) {
    try {
      parseStatusAuth(c.statusAuth);
    } catch (err) {
      problems.push((err as Error).message);
    }
  } else if (!isLoopbackHost(c.statusHost)) {
    problems.push(`STATUS_AUTH is required when STATUS_HOST (${c.statusHost}) is not loopback: the status page and API would be open to the network`);
  }
  return problems;
}

/** min(MAX_TOTAL_WORKERS, cores x MAX_WORKERS_PER_CORE when set): how many children may run at once (the memory reserve may hold a start back further). */
export function effectiveCapacity(c: Pick<Config, 'maxTotalWorkers' | 'maxWorkersPerCore'>, cores: number): number {
  return c.maxWorkersPerCore > 0 ? Math.min(c.maxTotalWorkers, Math.max(1, cores) * c.maxWorkersPerCore) : c.maxTotalWorkers;
}

/** Paths inside the home. */
export function homePaths(home: string) {
  return {
    home,
    data: path.join(home, 'data'),
    db: path.join(home, 'data', 'botfleet.db'),
    journal: path.join(home, 'data', 'journal.db'),
    keyFile: path.join(home, 'data', 'encryption.key'),
    secretFile: path.join(home, 'data', 'webhook.secret'),
    statusTokenFile: path.join(home, 'data', 'status.token'),
    logs: path.join(home, 'logs'),
    run: path.join(home, 'run'),
    pidFile: path.join(home, 'run', 'botfleet.pid'),
    portsFile: path.join(home, 'run', 'ports.json'),
    socket: path.join(home, 'run', 'botfleet.sock'),
  };
}

export type HomePaths = ReturnType<typeof homePaths>;

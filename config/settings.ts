/**
 * The table of every setting: its environment variable, its CLI flag, its default
 * and how it is parsed. DESIGN.md's defaults table is the contract; this is it in
 * code. `config/load.ts` turns env + flags into a validated {@link Config}.
 */
import os from 'node:os';

/** How a raw string becomes a value. */
export type SettingKind =
  | { kind: 'int'; min: number; max?: number }
  | { kind: 'bool' }
  | { kind: 'enum'; values: readonly string[] }
  | { kind: 'string' }
  | { kind: 'url' };

/** One row of the table. `flag` is `--<flag>` on `botfleet start`; none for a secret that must not show in `ps` (env only). */
export interface SettingDef {
  key: keyof Config;
  env: string;
  flag: string | null;
  default: string | undefined;
  /** How the docs show the default when it depends on the machine (e.g. "the core count"). */
  defaultDoc?: string;
  type: SettingKind;
  doc: string;
}

/** Bot delivery mode as configured; `auto` resolves to webhook when `WEBHOOK_HOST` is set. */
export type ModeSetting = 'polling' | 'webhook' | 'auto';

/** The validated configuration of one master. Times are ms, sizes as named. */
export interface Config {
  mode: ModeSetting;
  autoSwitchMode: boolean;
  maxTotalWorkers: number;
  maxWorkersPerCore: number;
  memoryReserveMb: number;
  maxMemoryPerWorkerMb: number;
  workerSemiSpaceMb: number;
  maxProcessesPerBot: number;
  maxDataPerBotMb: number;
  dataCheckIntervalMs: number;
  botsDataDir: string | undefined;
  memoryCheckIntervalMs: number;
  workerSchedPolicy: 'batch' | 'other';
  workerTimeoutMs: number;
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  startupTimeoutMs: number;
  maxRestartsPerHour: number;
  restartBackoffMs: number;
  restartCooldownMs: number;
  healthyRunMs: number;
  dedupWindowMs: number;
  journalSync: 'full' | 'normal';
  journalMaxPending: number;
  deliveryWindow: number;
  apiMaxRetries: number;
  apiRetryBackoffMs: number;
  rateLimitGlobal: number;
  rateLimitPerChat: number;
  webhookAllowedSources: string | undefined;
  webhookTrustProxy: string | undefined;
  webhookRequestTimeoutMs: number;
  webhookMaxConnections: number;
  webhookMaxConnectionsPerSource: number;
  webhookCheckMs: number;
  startConcurrency: number;
  registryPollMs: number;
  botsApiUrl: string | undefined;
  botsApiPollMs: number;
  botsApiToken: string | undefined;
  rollingRestartPercent: number;
  statusHost: string;
  statusPort: number;
  statusAuth: string | undefined;
  statusActions: boolean;
  statusMaxClients: number;
  webhookHost: string | undefined;
  webhookListenHost: string;
  webhookPort: number;
  webhookSslCert: string | undefined;
  webhookSslKey: string | undefined;
  webhookSecret: string | undefined;
  telegramApiRoot: string;
  pollingTimeoutSec: number;
  home: string;
  logLevel: string;
  logMaxBytes: number;
  logKeepFiles: number;
  logToStdout: boolean;
  workerLogBytesPerSec: number;
  workerUidBase: number;
  workerIsolation: 'auto' | 'uid' | 'permission' | 'off';
  allowUnisolatedChildProcesses: boolean;
  encryptionKey: string | undefined;
  /** This master's name in the cluster (unique among live members). */
  memberId: string;
  /** A member not renewed for this long is dead (ms). */
  clusterLeaseMs: number;
  /** A master that has not renewed within this (monotonic, from the renewal's send) stops its bots (ms). */
  clusterRenewDeadlineMs: number;
  /** How often the lease is renewed and ownership looked at (ms). */
  clusterRetryMs: number;
  /** `postgres://…`: the store on PostgreSQL (env only: the password never shows in `ps`); unset: SQLite in the home. */
  databaseUrl: string | undefined;
}

const cores = Math.max(1, os.availableParallelism());

/** Largest delay Node's timers take (2^31-1 ms, ~24.8 days); a larger one is clamped to 1 ms by Node, so it is refused here. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** Every setting, in the order docs/configuration.md lists them (`npm run docs` writes that table from this one). */
export const SETTINGS: readonly SettingDef[] = [
  { key: 'mode', env: 'BOT_MODE', flag: 'mode', default: 'polling', type: { kind: 'enum', values: ['polling', 'webhook', 'auto'] }, doc: 'default delivery mode; per-bot mode overrides' },
  { key: 'autoSwitchMode', env: 'AUTO_SWITCH_MODE', flag: 'auto-switch-mode', default: 'true', type: { kind: 'bool' }, doc: 'a webhook bot whose setWebhook fails falls back to polling' },
  { key: 'maxTotalWorkers', env: 'MAX_TOTAL_WORKERS', flag: 'max-total-workers', default: '1000', type: { kind: 'int', min: 1 }, doc: 'cap on children; effective cap is min(this, cores x per-core when set)' },
  { key: 'maxWorkersPerCore', env: 'MAX_WORKERS_PER_CORE', flag: 'max-workers-per-core', default: '0', type: { kind: 'int', min: 0 }, doc: 'children per CPU core; 0 (the default): no per-core cap, the memory reserve decides (DESIGN.md said 20: a 2-core box then ran 40 of the 1000 bots it holds)' },
  { key: 'memoryReserveMb', env: 'MEMORY_RESERVE_MB', flag: 'memory-reserve-mb', default: '1024', type: { kind: 'int', min: 0, max: 10_000_000 }, doc: "a bot starts only while the machine's available memory (Linux MemAvailable) minus what the workers still starting will take stays above this (MB); else it waits as pending, with the reason, and starts when memory frees. 0: off" },
  { key: 'maxMemoryPerWorkerMb', env: 'MAX_MEMORY_PER_WORKER_MB', flag: 'max-memory-per-worker-mb', default: '150', type: { kind: 'int', min: 16 }, doc: "a bot's memory cap (MB): its cgroup's memory limit where the machine allows (the kernel kills at once; shared memory counts), else sampled (RSS, then PSS when RSS is over) and killed at the first sample over, draining included; also bounds V8 old space" },
  { key: 'workerSemiSpaceMb', env: 'WORKER_SEMI_SPACE_MB', flag: 'worker-semi-space-mb', default: '2', type: { kind: 'int', min: 0, max: 64 }, doc: "cap of each worker's V8 young-generation semi-space (MB, node --max-semi-space-size); 0: V8's own (up to 16). 2 keeps an idle bot ~250 KB smaller (bench: scale); a handler that allocates fast scavenges more often" },
  { key: 'maxProcessesPerBot', env: 'MAX_PROCESSES_PER_BOT', flag: 'max-processes-per-bot', default: '256', type: { kind: 'int', min: 32, max: 100_000 }, doc: "tasks (processes and threads: a worker alone has ~11) a bot may have at once: its cgroup's pids.max, else RLIMIT_NPROC of its own uid; past it, fork and thread creation fail in that bot only" },
  { key: 'maxDataPerBotMb', env: 'MAX_DATA_PER_BOT_MB', flag: 'max-data-per-bot-mb', default: '256', type: { kind: 'int', min: 1, max: 10_000_000 }, doc: "size of a bot's own directory (MB, blocks used); over it the bot is stopped with reason disk and stays quarantined until an operator restarts it" },
  { key: 'dataCheckIntervalMs', env: 'DATA_CHECK_INTERVAL_MS', flag: 'data-check-interval-ms', default: '2000', type: { kind: 'int', min: 100, max: MAX_TIMER_MS }, doc: "how often each live bot's directory is checked: walked (its files, stopped as soon as it is over the cap) when inotify saw a change in it since the last walk, or that walk is 30 s old" },
  { key: 'botsDataDir', env: 'BOTS_DATA_DIR', flag: 'bots-data-dir', default: undefined, type: { kind: 'string' }, doc: "where the bots' own directories are (<dir>/<botId>/, each its HOME); default <home>/bots. Put it on another filesystem so a bot filling it cannot fill the master's" },
  { key: 'memoryCheckIntervalMs', env: 'MEMORY_CHECK_INTERVAL_MS', flag: 'memory-check-interval-ms', default: '5000', type: { kind: 'int', min: 50, max: MAX_TIMER_MS }, doc: "how often each bot's memory is sampled (draining bots too); its processes' CPU every sample without a cgroup, with one every sixth sample, at the listing of its cgroup" },
  { key: 'workerSchedPolicy', env: 'WORKER_SCHED_POLICY', flag: 'worker-sched-policy', default: 'batch', type: { kind: 'enum', values: ['batch', 'other'] }, doc: 'Linux scheduling policy of children: batch (SCHED_BATCH, via chrt: a woken child does not preempt the master) or other' },
  { key: 'workerTimeoutMs', env: 'WORKER_TIMEOUT_MS', flag: 'worker-timeout-ms', default: '90000', type: { kind: 'int', min: 10, max: MAX_TIMER_MS }, doc: 'drain deadline on stop, then SIGKILL' },
  { key: 'heartbeatIntervalMs', env: 'HEARTBEAT_INTERVAL_MS', flag: 'heartbeat-interval-ms', default: '15000', type: { kind: 'int', min: 10, max: MAX_TIMER_MS }, doc: 'worker -> master heartbeat period; a long-polling worker beats when its getUpdates returns instead, at most its poll deadline apart (30 s + 10 s) while that keeps a quarter of HEARTBEAT_TIMEOUT_MS free, and within this period after any activity' },
  { key: 'heartbeatTimeoutMs', env: 'HEARTBEAT_TIMEOUT_MS', flag: 'heartbeat-timeout-ms', default: '60000', type: { kind: 'int', min: 20, max: MAX_TIMER_MS }, doc: 'no heartbeat this long: the child is hung' },
  { key: 'startupTimeoutMs', env: 'STARTUP_TIMEOUT_MS', flag: 'startup-timeout-ms', default: '30000', type: { kind: 'int', min: 100, max: MAX_TIMER_MS }, doc: 'no ready this long after fork: startup-timeout' },
  { key: 'maxRestartsPerHour', env: 'MAX_RESTARTS_PER_HOUR', flag: 'max-restarts-per-hour', default: '5', type: { kind: 'int', min: 1 }, doc: 'restart intensity per bot, sliding hour' },
  { key: 'restartBackoffMs', env: 'RESTART_BACKOFF_MS', flag: 'restart-backoff-ms', default: '1000', type: { kind: 'int', min: 0, max: MAX_TIMER_MS }, doc: 'first backoff delay, doubled per restart' },
  { key: 'restartCooldownMs', env: 'RESTART_COOLDOWN_MS', flag: 'restart-cooldown-ms', default: '45000', type: { kind: 'int', min: 0, max: MAX_TIMER_MS }, doc: 'backoff cap' },
  { key: 'healthyRunMs', env: 'HEALTHY_RUN_MS', flag: 'healthy-run-ms', default: '300000', type: { kind: 'int', min: 0, max: MAX_TIMER_MS }, doc: 'a run this long resets the backoff: the next restart is immediate' },
  { key: 'dedupWindowMs', env: 'DEDUP_WINDOW_MS', flag: 'dedup-window-ms', default: '30000', type: { kind: 'int', min: 0, max: MAX_TIMER_MS }, doc: 'per-bot update_id dedup window (at most 10,000 ids; past that the oldest tenth is forgotten at once)' },
  { key: 'journalSync', env: 'JOURNAL_SYNC', flag: 'journal-sync', default: 'full', type: { kind: 'enum', values: ['full', 'normal'] }, doc: 'full: a journaled update survives power loss (fsync per commit); normal: it survives a crash of the process, not of the machine' },
  { key: 'journalMaxPending', env: 'JOURNAL_MAX_PENDING', flag: 'journal-max-pending', default: '10000', type: { kind: 'int', min: 1, max: 1_000_000 }, doc: 'per bot; beyond it (or 64 MiB of pending bodies) the webhook answers 503 with Retry-After: 5, so Telegram keeps the update' },
  { key: 'deliveryWindow', env: 'DELIVERY_WINDOW', flag: 'delivery-window', default: '64', type: { kind: 'int', min: 1, max: 1000 }, doc: 'journaled updates in flight to one worker at once' },
  { key: 'apiMaxRetries', env: 'API_MAX_RETRIES', flag: 'api-max-retries', default: '3', type: { kind: 'int', min: 0, max: 20 }, doc: "a handler's Bot API call: retries of a 429 (after retry_after), a network error or a 5xx (the library's maxRetries); per bot: settings.apiMaxRetries" },
  { key: 'apiRetryBackoffMs', env: 'API_RETRY_BACKOFF_MS', flag: 'api-retry-backoff-ms', default: '300', type: { kind: 'int', min: 0, max: 60_000 }, doc: "base of the jittered exponential backoff between those retries (the library's retryBackoffMs); per bot: settings.apiRetryBackoffMs" },
  { key: 'rateLimitGlobal', env: 'RATE_LIMIT_GLOBAL', flag: 'rate-limit-global', default: '30', type: { kind: 'int', min: 0, max: 10_000 }, doc: "a bot's Bot API calls per second (Telegram: about 30 messages a second per bot, https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this); 0 = no limiter; per bot: settings.rateLimitGlobal" },
  { key: 'rateLimitPerChat', env: 'RATE_LIMIT_PER_CHAT', flag: 'rate-limit-per-chat', default: '0', type: { kind: 'int', min: 0, max: 10_000 }, doc: "a bot's calls per second into one chat; 0 (the default) = no per-chat limit: Telegram allows short bursts into a chat and answers 429 with retry_after past them, which the library waits out and retries (API_MAX_RETRIES). Set 1 for Telegram's sustained guidance of about one message a second per chat; per bot: settings.rateLimitPerChat" },
  { key: 'webhookAllowedSources', env: 'WEBHOOK_ALLOWED_SOURCES', flag: 'webhook-allowed-sources', default: undefined, type: { kind: 'string' }, doc: 'comma-separated CIDR ranges allowed to post webhooks ("telegram" = 149.154.160.0/20, 91.108.4.0/22); others get 403; unset: any' },
  { key: 'webhookTrustProxy', env: 'WEBHOOK_TRUST_PROXY', flag: 'webhook-trust-proxy', default: undefined, type: { kind: 'string' }, doc: 'comma-separated proxy addresses whose X-Forwarded-For is believed' },
  { key: 'webhookRequestTimeoutMs', env: 'WEBHOOK_REQUEST_TIMEOUT_MS', flag: 'webhook-request-timeout-ms', default: '15000', type: { kind: 'int', min: 100, max: 120_000 }, doc: 'a webhook request must arrive whole within this (headers within two thirds of it), else 408 and the socket closes' },
  { key: 'webhookMaxConnections', env: 'WEBHOOK_MAX_CONNECTIONS', flag: 'webhook-max-connections', default: '1024', type: { kind: 'int', min: 1, max: 100_000 }, doc: 'open connections the webhook port accepts at once; beyond, new ones are closed' },
  { key: 'webhookMaxConnectionsPerSource', env: 'WEBHOOK_MAX_CONNECTIONS_PER_SOURCE', flag: 'webhook-max-connections-per-source', default: '512', type: { kind: 'int', min: 0, max: 100_000 }, doc: 'open connections one source address may hold on the webhook port (a WEBHOOK_TRUST_PROXY address is not limited); 0: no limit. A source outside WEBHOOK_ALLOWED_SOURCES is closed when it connects, before it holds a slot' },
  { key: 'webhookCheckMs', env: 'WEBHOOK_CHECK_MS', flag: 'webhook-check-ms', default: '300000', type: { kind: 'int', min: 100, max: 2_147_483_647 }, doc: "how often each running webhook bot's registration is compared with getWebhookInfo and set again if it drifted" },
  { key: 'startConcurrency', env: 'START_CONCURRENCY', flag: 'start-concurrency', default: String(cores), defaultDoc: 'the core count', type: { kind: 'int', min: 1, max: 64 }, doc: 'children forked at once (default: the core count)' },
  { key: 'registryPollMs', env: 'REGISTRY_POLL_MS', flag: 'registry-poll-ms', default: '1000', type: { kind: 'int', min: 50, max: MAX_TIMER_MS }, doc: 'how often the master looks for registry changes' },
  { key: 'botsApiUrl', env: 'BOTS_API_URL', flag: 'bots-api-url', default: undefined, type: { kind: 'url' }, doc: 'fetch bot configurations from this HTTP endpoint (docs/operations.md, "Configurations from an API"); the last good list is kept in the registry. A secret: it may carry userinfo (sent as Basic) or a key' },
  { key: 'botsApiPollMs', env: 'BOTS_API_POLL_MS', flag: 'bots-api-poll-ms', default: '10000', type: { kind: 'int', min: 100, max: MAX_TIMER_MS }, doc: 'how often the bots API is asked (If-None-Match: an unchanged list is a 304 and costs no write)' },
  { key: 'botsApiToken', env: 'BOTS_API_TOKEN', flag: 'bots-api-token', default: undefined, type: { kind: 'string' }, doc: 'sent to the bots API as Authorization: Bearer' },
  { key: 'rollingRestartPercent', env: 'ROLLING_RESTART_PERCENT', flag: 'rolling-restart-percent', default: '10', type: { kind: 'int', min: 1, max: 100 }, doc: 'share of the fleet restarted at once in a rolling restart (at least one bot)' },
  { key: 'statusHost', env: 'STATUS_HOST', flag: 'status-host', default: '127.0.0.1', type: { kind: 'string' }, doc: 'status server address' },
  { key: 'statusPort', env: 'STATUS_PORT', flag: 'status-port', default: '3001', type: { kind: 'int', min: 0, max: 65535 }, doc: 'status server port (0: any free port)' },
  { key: 'statusAuth', env: 'STATUS_AUTH', flag: 'status-auth', default: undefined, type: { kind: 'string' }, doc: 'bearer:<token> or basic:<user>:<password> (secrets of 16+ characters), required on every status route but /health; unset: a token generated into data/status.token. Must be set when STATUS_HOST is not loopback' },
  { key: 'statusActions', env: 'STATUS_ACTIONS', flag: 'status-actions', default: 'false', type: { kind: 'bool' }, doc: 'the status page may restart a bot or release its quarantine (POST, same-origin, same authentication; the CLI\'s restart path)' },
  { key: 'statusMaxClients', env: 'STATUS_MAX_CLIENTS', flag: 'status-max-clients', default: '128', type: { kind: 'int', min: 1, max: 10_000 }, doc: 'live-event streams (GET /api/events) open at once; one more is answered 503' },
  { key: 'webhookHost', env: 'WEBHOOK_HOST', flag: 'webhook-host', default: undefined, type: { kind: 'url' }, doc: 'public base URL Telegram posts to' },
  { key: 'webhookListenHost', env: 'WEBHOOK_LISTEN_HOST', flag: 'webhook-listen-host', default: '0.0.0.0', type: { kind: 'string' }, doc: 'address the webhook server binds' },
  { key: 'webhookPort', env: 'WEBHOOK_PORT', flag: 'webhook-port', default: '8443', type: { kind: 'int', min: 0, max: 65535 }, doc: 'webhook server port' },
  { key: 'webhookSslCert', env: 'WEBHOOK_SSL_CERT', flag: 'webhook-ssl-cert', default: undefined, type: { kind: 'string' }, doc: 'TLS certificate file (PEM)' },
  { key: 'webhookSslKey', env: 'WEBHOOK_SSL_KEY', flag: 'webhook-ssl-key', default: undefined, type: { kind: 'string' }, doc: 'TLS key file (PEM)' },
  { key: 'webhookSecret', env: 'WEBHOOK_SECRET', flag: 'webhook-secret', default: undefined, type: { kind: 'string' }, doc: 'HMAC key for per-bot secret_token; generated into the home when unset' },
  { key: 'telegramApiRoot', env: 'TELEGRAM_API_ROOT', flag: 'telegram-api-root', default: 'https://api.telegram.org', type: { kind: 'url' }, doc: 'Bot API root (self-hosted server or the emulator); per-bot override' },
  { key: 'pollingTimeoutSec', env: 'POLLING_TIMEOUT_SEC', flag: 'polling-timeout-sec', default: '30', type: { kind: 'int', min: 0, max: 50 }, doc: 'getUpdates long-poll timeout (s)' },
  { key: 'home', env: 'BOTFLEET_HOME', flag: 'home', default: undefined, type: { kind: 'string' }, doc: 'holds data/, logs/, run/ (default: the working directory)' },
  { key: 'logLevel', env: 'LOG_LEVEL', flag: 'log-level', default: 'info', type: { kind: 'enum', values: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] }, doc: 'pino level for master and workers' },
  { key: 'logMaxBytes', env: 'LOG_MAX_BYTES', flag: 'log-max-bytes', default: '10485760', type: { kind: 'int', min: 4096 }, doc: 'size at which a log file is rotated' },
  { key: 'logKeepFiles', env: 'LOG_KEEP_FILES', flag: 'log-keep-files', default: '5', type: { kind: 'int', min: 1, max: 100 }, doc: 'rotated copies kept per log (`.1` newest); a bot holds at most (LOG_KEEP_FILES + 1) x LOG_MAX_BYTES' },
  { key: 'logToStdout', env: 'LOG_TO_STDOUT', flag: 'log-to-stdout', default: 'false', type: { kind: 'bool' }, doc: "also write every worker's lines to the master's stdout as JSON with botId (containers); the master's own lines go there when it runs in the foreground" },
  { key: 'workerLogBytesPerSec', env: 'WORKER_LOG_BYTES_PER_SEC', flag: 'worker-log-bytes-per-sec', default: '1048576', type: { kind: 'int', min: 1024, max: MAX_TIMER_MS }, doc: "a bot's stdout+stderr budget per second; lines beyond it are dropped and counted" },
  { key: 'workerUidBase', env: 'WORKER_UID_BASE', flag: 'worker-uid-base', default: '61184', type: { kind: 'int', min: 1000, max: 2_000_000_000 }, doc: "first per-bot uid (at most 2,000,000,000: uids past 2^31-1 are refused by node and setpriv) (systemd's DynamicUser range 61184-65519); a bot runs as base + its slot when the master may change user. Two masters on one machine need distinct bases (the master refuses a base another master holds)" },
  { key: 'workerIsolation', env: 'WORKER_ISOLATION', flag: 'worker-isolation', default: 'auto', type: { kind: 'enum', values: ['auto', 'uid', 'permission', 'off'] }, doc: 'auto: per-bot uids where the master may change user, plus the Node permission model; uid: per-bot uids only (start fails where they cannot apply); permission: the permission model only; off: neither (development only)' },
  { key: 'allowUnisolatedChildProcesses', env: 'ALLOW_UNISOLATED_CHILD_PROCESSES', flag: 'allow-unisolated-child-processes', default: 'false', type: { kind: 'bool' }, doc: 'let a bot whose settings say allowChildProcess or allowWorkerThreads start where per-bot uids are not in force; its children escape the permission model (they can read the key, the database and the control token). Off: such a bot is quarantined with reason config' },
  { key: 'encryptionKey', env: 'BOTFLEET_ENCRYPTION_KEY', flag: 'encryption-key', default: undefined, type: { kind: 'string' }, doc: '32-byte key (64 hex chars or base64) for tokens at rest; else a key file in the home (generated only while the registry holds no token)' },
  { key: 'memberId', env: 'MEMBER_ID', flag: 'member-id', default: os.hostname(), defaultDoc: 'the host name', type: { kind: 'string' }, doc: "this master's name in the cluster (DATABASE_URL): unique among the live members; on Kubernetes the pod name. A restarted master keeps its name and gets a new epoch" },
  { key: 'clusterLeaseMs', env: 'CLUSTER_LEASE_MS', flag: 'cluster-lease-ms', default: '15000', type: { kind: 'int', min: 1000, max: MAX_TIMER_MS }, doc: "a member whose lease was not renewed for this long is dead and its bots are taken over (the database's clock decides; Kubernetes leader election's 15 s)" },
  { key: 'clusterRenewDeadlineMs', env: 'CLUSTER_RENEW_DEADLINE_MS', flag: 'cluster-renew-deadline-ms', default: '10000', type: { kind: 'int', min: 500, max: MAX_TIMER_MS }, doc: 'a master that could not renew its lease within this (its own monotonic clock, from the last good renewal\'s send) stops its bots by itself, before the lease can expire (the self-fence); below CLUSTER_LEASE_MS' },
  { key: 'clusterRetryMs', env: 'CLUSTER_RETRY_MS', flag: 'cluster-retry-ms', default: '2000', type: { kind: 'int', min: 100, max: MAX_TIMER_MS }, doc: 'how often a master renews its lease and looks at ownership; the renew deadline must exceed 1.2 x this' },
  { key: 'databaseUrl', env: 'DATABASE_URL', flag: null, default: undefined, type: { kind: 'string' }, doc: 'postgres://user:password@host:port/database: the store (bots, history, dead letters, journal) on PostgreSQL, shared by the masters of a cluster; unset: SQLite in the home. Environment only (never a flag: the password would show in `ps`); the password never appears in logs, status or errors. Every master and the CLI need the same BOTFLEET_ENCRYPTION_KEY' },
];

/** An environment variable read outside {@link SETTINGS}: docs/configuration.md lists these too. */
export interface OtherEnvDef {
  env: string;
  doc: string;
}

/** The environment variables botfleet reads that are not master settings. */
export const OTHER_ENVIRONMENT: readonly OtherEnvDef[] = [
  { env: 'RUNTIME_DIRECTORY', doc: 'set by systemd for a unit with `RuntimeDirectory=`: the directory of the machine-wide uid-range locks (default /run/botfleet, sticky and world-writable)' },
  { env: 'NO_COLOR', doc: 'set (to anything): the CLI (`status --watch`, `logs`, `demo`) prints no colour (https://no-color.org)' },
];

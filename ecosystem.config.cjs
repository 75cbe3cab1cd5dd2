// PM2 runs the botfleet master as one app; botfleet supervises the bots itself (README "Deployment").
//   BOTFLEET_HOME=/var/lib/botfleet pm2 start ecosystem.config.cjs
// Rolling restart of the bots (one batch at a time, every bot answering throughout):
//   pm2 sendSignal SIGUSR2 botfleet
// `pm2 reload botfleet` / `pm2 restart botfleet` restart the master itself (in fork mode PM2
// stops, then starts: every bot is down for the drain and the start, about a second).
const os = require('node:os');
const path = require('node:path');

// The home (registry, journal, key, logs) lives outside the code directory: PM2 must never
// watch it, and a redeploy of the code must not touch it.
const home = process.env.BOTFLEET_HOME || path.join(os.homedir(), '.botfleet');

module.exports = {
  apps: [
    {
      name: 'botfleet',
      script: path.join(__dirname, 'dist/cli/main.js'),
      args: 'start',
      cwd: home,
      env: { BOTFLEET_HOME: home, NODE_ENV: 'production' },
      exec_mode: 'fork',
      instances: 1,
      // Never: a file change must not restart the whole fleet.
      watch: false,
      // No max_memory_restart: PM2 would restart every bot for the master's RSS; botfleet caps each bot itself (MAX_MEMORY_PER_WORKER_MB).
      // Above the drain (WORKER_TIMEOUT_MS, 90 s): SIGINT, the master drains its workers, then exits.
      kill_timeout: 120000,
      // No @pm2/io module injected into the master: with it, a killed PM2 daemon took the master (and every bot) down.
      pmx: false,
      automation: false,
      autorestart: true,
      // A master that cannot start (exit 78: bad configuration) is not restarted in a loop.
      stop_exit_codes: [78],
      max_restarts: 10,
      min_uptime: 10000,
      exp_backoff_restart_delay: 1000,
      merge_logs: true,
    },
  ],
};

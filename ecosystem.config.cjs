// PM2 runs the botfleet master as one app; botfleet supervises the bots itself.
// pm2 start ecosystem.config.cjs
module.exports = {
  apps: [
    {
      name: 'botfleet',
      script: 'dist/cli/main.js',
      args: 'start',
      cwd: __dirname,
      env: { BOTFLEET_HOME: __dirname },
      // botfleet drains its workers before exiting; let PM2 wait for that.
      kill_timeout: 120000,
      autorestart: true,
      max_restarts: 10,
    },
  ],
};

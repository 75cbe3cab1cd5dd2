#!/usr/bin/env node
/**
 * Standalone emulator: `node dist/scripts/emulator/main.js --port 8081 [--bots N]`.
 * Prints the API root and, with --bots, the generated test tokens (emulator-only,
 * worthless anywhere else); with --report-first-poll, each bot's first getUpdates. Stops on SIGINT/SIGTERM.
 */
import { Command } from 'commander';
import { BotApiEmulator } from './emulator.js';

const program = new Command('botfleet-emulator')
  .option('--host <host>', 'address to bind', '127.0.0.1')
  .option('--port <port>', 'port to listen on (0: any)', '8081')
  .option('--bots <n>', 'bots to create at start', '0')
  .option('--webhook-retry-ms <ms>', 'pause before a webhook redelivery', '1000')
  .option('--report-first-poll', "print {\"firstPoll\": <bot id>} when a bot's first getUpdates arrives (benchmarks)")
  .parse();
const o = program.opts<{ host: string; port: string; bots: string; webhookRetryMs: string; reportFirstPoll?: boolean }>();
const emulator = new BotApiEmulator({ host: o.host, port: Number(o.port), webhookRetryMs: Number(o.webhookRetryMs) });
const root = await emulator.start();
console.log(JSON.stringify({ apiRoot: root }));
for (let i = 0; i < Number(o.bots); i++) {
  const b = emulator.createBot();
  console.log(JSON.stringify({ id: b.id, username: b.username, token: b.token }));
}
if (o.reportFirstPoll) {
  const seen = new Set<number>();
  emulator.on('poll', (b: { id: number }) => {
    if (seen.has(b.id)) return;
    seen.add(b.id);
    console.log(JSON.stringify({ firstPoll: b.id }));
  });
}
const stop = () => void emulator.stop().then(() => process.exit(0));
process.on('SIGINT', stop);
process.on('SIGTERM', stop);

/**
 * The baseline child of the benchmarks: imports node-telegram-bot-api (what every
 * bot worker pays for), says ready, and acks every `update` it is sent. Under
 * botfleet's harness it speaks botfleet's IPC; under PM2 it sends PM2's 'ready'
 * (wait_ready). Nothing else.
 */
import { Bot } from 'node-telegram-bot-api';

void Bot;
if (process.env.BENCH_PM2 === '1') {
  process.send?.('ready');
  setInterval(() => undefined, 1 << 30);
} else {
  // Acks one message per update, as the simplest forwarder would (the baseline does not batch).
  process.on('message', (m: { type?: string; update?: { update_id: number } }) => {
    if (m.type === 'update' && m.update) process.send!({ v: 1, type: 'ack', updateId: m.update.update_id, ok: true });
  });
  process.on('disconnect', () => process.exit(0));
  process.send!({ v: 1, type: 'ready', username: null });
}

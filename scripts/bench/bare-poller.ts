/**
 * The like-for-like baseline of a fleet start (the lifecycle issue's decision): one bot
 * as a user would run it bare, with node-telegram-bot-api: `getMe`, then a `getUpdates`
 * long-polling loop. Token and API root from BENCH_TOKEN and BENCH_API_ROOT (emulator
 * tokens, worthless elsewhere). Runs until killed.
 */
import { Api } from 'node-telegram-bot-api';

const api = new Api(process.env.BENCH_TOKEN!, { apiRoot: process.env.BENCH_API_ROOT! });
await api.getMe();
let offset = 0;
for (;;) {
  const updates = await api.getUpdates({ offset, timeout: 30 }).catch(() => []);
  for (const u of updates) offset = u.update_id + 1;
}

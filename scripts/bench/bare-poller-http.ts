/**
 * The scale benchmark's limit baseline: bare-poller.ts on botfleet's own HTTP path
 * (common/bot-api-http.ts, as a worker's getMe and long poll go), with the library's
 * `Bot` made as a worker makes it for its handler. What is left between this and a
 * botfleet worker is what the supervisor costs. Token and API root from BENCH_TOKEN
 * and BENCH_API_ROOT (emulator tokens, worthless elsewhere). Runs until killed.
 */
import { Bot } from 'node-telegram-bot-api';
import { botApiFetch, callBotApi } from '../../common/bot-api-http.js';

const token = process.env.BENCH_TOKEN!;
const apiRoot = process.env.BENCH_API_ROOT!;
void new Bot(token, { apiRoot, fetch: botApiFetch });
const call = <T>(method: string, params: object, timeoutMs: number) => callBotApi<T>(apiRoot, token, method, params, { timeoutMs });
await call('getMe', {}, 10_000);
let offset = 0;
for (;;) {
  const updates = await call<Array<{ update_id: number }>>('getUpdates', { offset, timeout: 30 }, 40_000).catch(() => []);
  for (const u of updates) offset = u.update_id + 1;
}

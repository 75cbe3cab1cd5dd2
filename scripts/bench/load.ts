/**
 * The load generator, run as its own process so it does not share the server's
 * event loop: autocannon POSTing real Update JSON to `/webhook/:botId`, rotating
 * over the given bots with a unique `update_id` per request, counting up from
 * `firstUpdateId` (the caller gives each run its own range, so no run repeats an
 * id a worker's dedup window still holds). Input: one JSON argument
 * `{ url, bots: [{ id, secret }], seconds, connections, firstUpdateId, rate? }` (`rate`: a fixed
 * overall requests/s instead of as fast as the server answers). Output: one
 * JSON line `{ rps, p50, p99, non2xx, total }` (latencies in ms).
 */
import autocannon from 'autocannon';

interface LoadSpec { url: string; bots: Array<{ id: string; secret: string }>; seconds: number; connections: number; firstUpdateId: number; rate?: number }

const spec = JSON.parse(process.argv[2]!) as LoadSpec;
let n = 0;
const result = await autocannon({
  url: spec.url,
  connections: spec.connections,
  duration: spec.seconds,
  ...(spec.rate ? { overallRate: spec.rate } : {}),
  requests: [{
    method: 'POST',
    setupRequest: (req: autocannon.Request) => {
      const i = n++;
      const bot = spec.bots[i % spec.bots.length]!;
      const chat = 1000 + (i % 500);
      const update = { update_id: spec.firstUpdateId + i, message: { message_id: i + 1, date: Math.floor(Date.now() / 1000), chat: { id: chat, type: 'private' }, from: { id: chat, is_bot: false, first_name: 'Load' }, text: `load ${i}` } };
      return { ...req, path: `/webhook/${bot.id}`, headers: { 'content-type': 'application/json', 'x-telegram-bot-api-secret-token': bot.secret }, body: JSON.stringify(update) };
    },
  }],
});
console.log(JSON.stringify({ rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99, non2xx: result.non2xx, total: result.requests.total }));

/**
 * A local Telegram Bot API emulator on loopback, for tests, the demo and
 * benchmarks. Implements getMe, getUpdates (offset, timeout, limit,
 * allowed_updates; 409 Conflict when a webhook is set or a newer getUpdates
 * arrives), setWebhook (url, secret_token, allowed_updates, max_connections,
 * drop_pending_updates) with delivery by POST and redelivery after a non-2xx,
 * deleteWebhook, getWebhookInfo, sendMessage and answerCallbackQuery. Unknown
 * methods answer 404 like Telegram. The test side plays users.
 */
import crypto from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Update } from 'node-telegram-bot-api';
import { EmulatedBot, TOKEN_RE, type SentMessage } from './bot-state.js';
import { deliverWebhooks } from './webhook-delivery.js';
import { bool, err, int, json, ok, sendMessageRequest, webhookInfo, webhookRequest, type Answer, type Params } from './answers.js';

/** Options; times in ms. */
export interface EmulatorOptions {
  host?: string;
  port?: number;
  /** Wait before redelivering after a failed webhook call. Default 1000. */
  webhookRetryMs?: number;
}

interface PollWaiter { resolve: (a: Answer) => void; timer: NodeJS.Timeout; limit: number }

/** The emulator. Start it, create bots (tokens are generated), play users, read what bots sent. */
export class BotApiEmulator extends EventEmitter {
  readonly bots = new Map<number, EmulatedBot>();
  private readonly app: FastifyInstance;
  private readonly waiters = new Map<number, PollWaiter>();
  private readonly retryMs: number;
  private stopping = false;
  private url = '';
  private nextCallbackId = 1;

  constructor(private readonly options: EmulatorOptions = {}) {
    super();
    this.setMaxListeners(0);
    this.retryMs = options.webhookRetryMs ?? 1000;
    this.app = Fastify({ logger: false, forceCloseConnections: true, bodyLimit: 50 * 1024 * 1024 });
    this.app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_req, body, done) => {
      done(null, Object.fromEntries(new URLSearchParams(body as string)));
    });
    this.app.all('/bot:token/:method', async (req, reply) => {
      const { token, method } = req.params as { token: string; method: string };
      const params = { ...(req.query as Params), ...((req.body as Params | undefined) ?? {}) };
      const answer = await this.call(token, method, params, reply.raw);
      return reply.code(answer.status).send(answer.body);
    });
    this.registerTestRoutes();
  }

  /** Listen (default 127.0.0.1, any free port). @returns the API root, e.g. `http://127.0.0.1:40123`. */
  async start(): Promise<string> {
    this.url = await this.app.listen({ host: this.options.host ?? '127.0.0.1', port: this.options.port ?? 0 });
    return this.url;
  }

  get apiRoot(): string {
    return this.url;
  }

  /** Answer pending long polls and close. */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const [id, w] of this.waiters) {
      clearTimeout(w.timer);
      w.resolve(ok([]));
      this.waiters.delete(id);
    }
    this.emit('stop');
    await this.app.close();
  }

  /** Create a bot with a fresh token of Telegram's shape. */
  createBot(username = `bot${this.bots.size + 1}_bot`, firstName = username): EmulatedBot {
    const id = 1_000_000 + crypto.randomInt(1, 2 ** 31 - 1_000_001);
    const token = `${id}:${crypto.randomBytes(27).toString('base64url').slice(0, 35)}`;
    const bot = new EmulatedBot(id, token, username, firstName);
    this.bots.set(id, bot);
    return bot;
  }

  /** The bot of a token, or undefined. */
  botByToken(token: string): EmulatedBot | undefined {
    const m = TOKEN_RE.exec(token);
    const bot = m ? this.bots.get(Number(m[1])) : undefined;
    return bot && bot.token === token ? bot : undefined;
  }

  // ---- the user side -------------------------------------------------------

  /** A user sends `text` to the bot in a private chat `chatId` (also the user id). Commands get a bot_command entity. */
  userSends(bot: EmulatedBot, chatId: number, text: string): Update {
    const from = { id: chatId, is_bot: false, first_name: `User${chatId}` };
    const command = /^\/\w+/.exec(text);
    const message = {
      message_id: bot.newMessageId(), from, chat: { id: chatId, type: 'private', first_name: from.first_name },
      date: Math.floor(Date.now() / 1000), text,
      ...(command ? { entities: [{ type: 'bot_command', offset: 0, length: command[0].length }] } : {}),
    };
    return this.push(bot, { message } as Omit<Update, 'update_id'>);
  }

  /** A user taps an inline button with callback `data`. */
  userClicks(bot: EmulatedBot, chatId: number, data: string): Update {
    const id = String(this.nextCallbackId++);
    bot.openCallbacks.add(id);
    const from = { id: chatId, is_bot: false, first_name: `User${chatId}` };
    const message = { message_id: bot.newMessageId(), chat: { id: chatId, type: 'private' }, date: Math.floor(Date.now() / 1000), text: 'buttons' };
    return this.push(bot, { callback_query: { id, from, chat_instance: String(chatId), data, message } } as unknown as Omit<Update, 'update_id'>);
  }

  /** Wait until `bot` has sent a message matching `pred` (checked against past messages too). */
  async waitForSent(bot: EmulatedBot, pred: (m: SentMessage) => boolean, timeoutMs: number, what = 'a matching message'): Promise<SentMessage> {
    const found = bot.sent.find(pred);
    if (found) return found;
    const signal = AbortSignal.timeout(timeoutMs);
    try {
      for (;;) {
        const [b, m] = (await once(this, 'sent', { signal })) as [EmulatedBot, SentMessage];
        if (b === bot && pred(m)) return m;
      }
    } catch {
      throw new Error(`bot @${bot.username} did not send ${what} within ${timeoutMs} ms (it sent ${bot.sent.length} messages)`);
    }
  }

  /** True while a getUpdates call of `bot` is waiting (long polling). */
  isLongPolling(bot: EmulatedBot): boolean {
    return this.waiters.has(bot.id);
  }

  private push(bot: EmulatedBot, body: Omit<Update, 'update_id'>): Update {
    const update = bot.enqueue(body);
    this.wakePoller(bot);
    if (bot.webhook) this.kickWebhook(bot);
    return update;
  }

  // ---- the Bot API side ----------------------------------------------------

  private async call(token: string, method: string, p: Params, raw: NodeJS.EventEmitter): Promise<Answer> {

    if (!TOKEN_RE.test(token)) return err(404, 'Not Found');
    const bot = this.botByToken(token);
    if (!bot) return err(401, 'Unauthorized');
    switch (method.toLowerCase()) {
      case 'getme': return ok(bot.user());
      case 'getupdates': return this.getUpdates(bot, p, raw);
      case 'setwebhook': return this.setWebhook(bot, p);
      case 'deletewebhook':
        bot.webhook = undefined;
        if (bool(p.drop_pending_updates)) bot.pending = [];
        return ok(true);
      case 'getwebhookinfo': return ok(webhookInfo(bot));
      case 'sendmessage': return this.sendMessage(bot, p);
      case 'answercallbackquery': {
        const id = String(p.callback_query_id ?? '');
        if (!bot.openCallbacks.delete(id)) return err(400, 'Bad Request: query is too old and response timeout expired or query ID is invalid');
        bot.answeredCallbacks.push({ callback_query_id: id, ...(typeof p.text === 'string' ? { text: p.text } : {}) });
        return ok(true);
      }
      default: return err(404, 'Not Found');
    }
  }

  private getUpdates(bot: EmulatedBot, p: Params, raw: NodeJS.EventEmitter): Promise<Answer> | Answer {
    this.emit('poll', bot);
    if (bot.webhook) {
      bot.conflicts++;
      return err(409, "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first");
    }
    const previous = this.waiters.get(bot.id);
    if (previous) {
      // Telegram ends the older request when a newer one arrives.
      bot.conflicts++;
      clearTimeout(previous.timer);
      this.waiters.delete(bot.id);
      previous.resolve(err(409, 'Conflict: terminated by other getUpdates request; make sure that only one bot instance is running'));
    }
    bot.confirm(int(p.offset));
    const allowed = json(p.allowed_updates);
    if (Array.isArray(allowed)) bot.allowedUpdates = allowed.map(String);
    const limit = Math.min(100, Math.max(1, int(p.limit) ?? 100));
    const timeoutSec = Math.max(0, int(p.timeout) ?? 0);
    const now = bot.take(limit, bot.allowedUpdates);
    if (now.length > 0 || timeoutSec === 0 || this.stopping) {
      bot.deliveries += now.length;
      return ok(now);
    }
    return new Promise<Answer>((resolve) => {
      const finish = (a: Answer) => {
        raw.off('close', onClose);
        resolve(a);
      };
      const onClose = () => {
        const w = this.waiters.get(bot.id);
        if (w && w.resolve === finish) {
          clearTimeout(w.timer);
          this.waiters.delete(bot.id);
        }
      };
      const timer = setTimeout(() => {
        this.waiters.delete(bot.id);
        finish(ok([]));
      }, timeoutSec * 1000);
      this.waiters.set(bot.id, { resolve: finish, timer, limit });
      raw.once('close', onClose);
    });
  }

  private wakePoller(bot: EmulatedBot): void {
    const w = this.waiters.get(bot.id);
    if (!w) return;
    const updates = bot.take(w.limit, bot.allowedUpdates);
    if (updates.length === 0) return;
    clearTimeout(w.timer);
    this.waiters.delete(bot.id);
    bot.deliveries += updates.length;
    w.resolve(ok(updates));
  }

  private setWebhook(bot: EmulatedBot, p: Params): Answer {
    const r = webhookRequest(p);
    if ('status' in r) return r;
    if (r.url === '') {
      bot.webhook = undefined;
      return ok(true);
    }
    if (bool(p.drop_pending_updates)) bot.pending = [];
    const waiter = this.waiters.get(bot.id);
    if (waiter) {
      clearTimeout(waiter.timer);
      this.waiters.delete(bot.id);
      waiter.resolve(err(409, 'Conflict: terminated by setWebhook request'));
    }
    bot.webhook = { url: r.url, secretToken: r.secretToken, maxConnections: r.maxConnections, allowedUpdates: r.allowedUpdates ?? bot.allowedUpdates, lastErrorDate: undefined, lastErrorMessage: undefined };
    this.kickWebhook(bot);
    return ok(true);
  }

  /** Answer the bot's sendMessage with 429 and `retry_after` for the next `ms` (Telegram's flood wait). */
  floodWait(bot: EmulatedBot, ms: number): void {
    bot.floodUntil = Date.now() + ms;
  }

  private sendMessage(bot: EmulatedBot, p: Params): Answer {
    const waitMs = bot.floodUntil - Date.now();
    if (waitMs > 0) {
      bot.floodRefused++;
      const retryAfter = Math.ceil(waitMs / 1000);
      const a = err(429, `Too Many Requests: retry after ${retryAfter}`);
      a.body.parameters = { retry_after: retryAfter };
      return a;
    }
    const r = sendMessageRequest(p);
    if ('status' in r) return r;
    const { chatId, text, extra } = r;
    const result = bot.recordSent(chatId, text, extra);
    this.emit('sent', bot, bot.sent[bot.sent.length - 1]);
    return ok(result);
  }

  private kickWebhook(bot: EmulatedBot): void {
    void deliverWebhooks(bot, { retryMs: this.retryMs, stopped: () => this.stopping });
  }

  /** HTTP routes for driving a standalone emulator: create bots, send as a user, read what bots sent. */
  private registerTestRoutes(): void {
    this.app.post('/_emulator/bots', async (req) => {
      const b = (req.body ?? {}) as { username?: string };
      const bot = this.createBot(b.username);
      return { id: bot.id, token: bot.token, username: bot.username };
    });
    const find = (id: string) => this.bots.get(Number(id));
    this.app.post('/_emulator/bots/:id/messages', async (req, reply) => {
      const bot = find((req.params as { id: string }).id);
      if (!bot) return reply.code(404).send({ error: 'no such bot' });
      const b = req.body as { chat_id?: number; text?: string };
      return this.userSends(bot, Number(b.chat_id ?? 1), String(b.text ?? ''));
    });
    this.app.get('/_emulator/bots/:id/sent', async (req, reply) => {
      const bot = find((req.params as { id: string }).id);
      return bot ? bot.sent : reply.code(404).send({ error: 'no such bot' });
    });
    this.app.get('/_emulator/stats', async () =>
      [...this.bots.values()].map((b) => ({ id: b.id, username: b.username, pending: b.pending.length, sent: b.sent.length, conflicts: b.conflicts, deliveries: b.deliveries, webhook: b.webhook?.url ?? null })));
  }
}

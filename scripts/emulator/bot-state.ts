/**
 * The state of one emulated bot, faithful to the Bot API docs
 * (https://core.telegram.org/bots/api#getting-updates): a queue of pending
 * updates with increasing `update_id`s, confirmed by `getUpdates`' `offset`;
 * remembered `allowed_updates`; an optional webhook; what the bot sent.
 * No I/O here: the HTTP server and the webhook delivery loop drive it.
 */
import type { Update } from 'node-telegram-bot-api';

/** A message a bot sent through `sendMessage`, as the test side reads it. */
export interface SentMessage {
  message_id: number;
  chat_id: number;
  text: string;
  reply_markup?: unknown;
  reply_to_message_id?: number;
  date: number;
}

/** The webhook as set by `setWebhook`. */
export interface WebhookState {
  url: string;
  secretToken: string | undefined;
  maxConnections: number;
  allowedUpdates: string[] | undefined;
  lastErrorDate: number | undefined;
  lastErrorMessage: string | undefined;
}

/** One emulated bot. `id` is the numeric part of its token. */
export class EmulatedBot {
  readonly sent: SentMessage[] = [];
  readonly answeredCallbacks: Array<{ callback_query_id: string; text?: string }> = [];
  pending: Update[] = [];
  webhook: WebhookState | undefined;
  allowedUpdates: string[] | undefined;
  /** getUpdates calls answered 409 (another poller, or a webhook set). */
  conflicts = 0;
  /** Updates ever handed out, by getUpdates or webhook delivery (a redelivery counts again). */
  deliveries = 0;
  /** Webhook POST outcomes: HTTP status (`"200"`, `"503"`, ...) or `"error"` (no answer) -> count. */
  readonly webhookAnswers: Record<string, number> = {};
  /**
   * A load balancer in front of several webhook servers (a cluster's masters): each POST goes
   * to the next of these origins (`http://host:port`), the registered URL's path kept, one
   * update at a time (so a chat's order is the posting order). An origin that failed is left
   * out for `downMs` (nginx's passive health check: max_fails=1, fail_timeout) unless all are;
   * one that does not answer within `timeoutMs` (default 3 s) has failed. Absent: the registered URL.
   */
  balance: { origins: string[]; next: number; downUntil?: Map<string, number>; downMs?: number; timeoutMs?: number } | undefined;
  /** Until this wall-clock ms, sendMessage answers 429 with `retry_after` (a flood wait). */
  floodUntil = 0;
  /** sendMessage calls answered 429. */
  floodRefused = 0;
  private nextUpdateId = 100_000;
  private nextMessageId = 1;
  readonly openCallbacks = new Set<string>();

  constructor(readonly id: number, readonly token: string, readonly username: string, readonly firstName: string) {}

  /** The bot's `User` object (getMe). */
  user() {
    return { id: this.id, is_bot: true, first_name: this.firstName, username: this.username, can_join_groups: true, can_read_all_group_messages: false, supports_inline_queries: false };
  }

  /** Queue an update; `update_id` is assigned here. */
  enqueue(body: Omit<Update, 'update_id'>): Update {
    const update = { update_id: this.nextUpdateId++, ...body } as Update;
    this.pending.push(update);
    return update;
  }

  /** Drop every pending update with `update_id < offset` (the docs' confirmation rule); negative offset keeps the last -offset. */
  confirm(offset: number | undefined): void {
    if (offset === undefined) return;
    if (offset < 0) this.pending = this.pending.slice(offset);
    else this.pending = this.pending.filter((u) => u.update_id >= offset);
  }

  /** Pending updates of the allowed types, at most `limit`. An empty allowed list means all but the opt-in types. */
  take(limit: number, allowed: string[] | undefined): Update[] {
    const ok = (u: Update) => !allowed || allowed.length === 0 || Object.keys(u).some((k) => k !== 'update_id' && allowed.includes(k));
    return this.pending.filter(ok).slice(0, limit);
  }

  /** Record a sent message and return the Message object the API answers with. */
  recordSent(chatId: number, text: string, extra: Partial<SentMessage>): Record<string, unknown> {
    const m: SentMessage = { message_id: this.nextMessageId++, chat_id: chatId, text, date: Math.floor(Date.now() / 1000), ...extra };
    this.sent.push(m);
    return { message_id: m.message_id, from: this.user(), chat: { id: chatId, type: chatId < 0 ? 'group' : 'private' }, date: m.date, text };
  }

  newMessageId(): number {
    return this.nextMessageId++;
  }
}

/** Bot API token shape: `<digits>:<35 chars>`. */
export const TOKEN_RE = /^(\d{5,15}):[A-Za-z0-9_-]{35}$/;

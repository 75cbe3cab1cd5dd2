/**
 * The bot handler contract (DESIGN.md "Bot handlers"): a handler is a built-in
 * name or an ES module whose default export is a {@link HandlerSetup}.
 */
import type { Bot } from 'node-telegram-bot-api';
import type { Logger } from 'pino';

/** What a handler is given besides the bot. `settings` is the bot's settings JSON. */
export interface HandlerContext {
  botId: string;
  settings: Record<string, unknown>;
  /** The bot's logger (pino, its lines in logs/worker_<botId>.log). */
  logger: Logger;
  /** A child of `logger` whose lines carry `updateId`: use it for lines about one update (`ctx.loggerFor(c)` in a handler). */
  loggerFor(c: { update: { update_id: number } }): Logger;
}

/** Optional hooks a handler returns; `onSettings` receives hot-reloaded settings. */
export interface HandlerHooks {
  onSettings?(settings: Record<string, unknown>): void;
}

/** Registers middleware on `bot`; may return {@link HandlerHooks}. May be async. */
export type HandlerSetup = (bot: Bot, ctx: HandlerContext) => void | HandlerHooks | Promise<void | HandlerHooks>;

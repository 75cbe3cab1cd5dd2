/**
 * `handoff`: relays users' messages to an operator chat and the operator's replies
 * back. Settings: `{ operatorChatId: number, intro?: string }`.
 * A user's message is posted to the operator chat as `#<userChatId>\n<text>`; the
 * operator answers by replying to that message, or with `/reply <userChatId> <text>`.
 * Relayed message ids are remembered in memory (last 10000).
 */
import type { HandlerSetup } from './types.js';

const MAX_REMEMBERED = 10_000;

const handoff: HandlerSetup = (bot, ctx) => {
  let operatorChatId = Number(ctx.settings.operatorChatId);
  let intro = typeof ctx.settings.intro === 'string' ? ctx.settings.intro : 'You are connected to an operator.';
  const userOf = new Map<number, number>(); // operator-chat message_id -> user chat id

  bot.on('message', async (c) => {
    const msg = c.message!;
    const text = msg.text;
    if (text === undefined) return;
    if (msg.chat.id === operatorChatId) {
      const direct = /^\/reply\s+(-?\d+)\s+([\s\S]+)$/.exec(text);
      const replyTo = msg.reply_to_message?.message_id;
      const target = direct ? Number(direct[1]) : replyTo !== undefined ? userOf.get(replyTo) : undefined;
      if (target === undefined) return;
      await c.api.sendMessage({ chat_id: target, text: direct ? direct[2]! : text });
      return;
    }
    if (!Number.isFinite(operatorChatId)) return;
    if (text === '/start') {
      await c.reply(intro);
      return;
    }
    const relayed = await c.api.sendMessage({ chat_id: operatorChatId, text: `#${msg.chat.id}\n${text}` });
    userOf.set(relayed.message_id, msg.chat.id);
    if (userOf.size > MAX_REMEMBERED) userOf.delete(userOf.keys().next().value as number);
  });
  return {
    onSettings(settings) {
      operatorChatId = Number(settings.operatorChatId);
      if (typeof settings.intro === 'string') intro = settings.intro;
    },
  };
};

export default handoff;

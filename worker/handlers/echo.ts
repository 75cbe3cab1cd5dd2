/** `echo`: replies to every text message with the same text; answers callback queries. */
import type { HandlerSetup } from './types.js';

const echo: HandlerSetup = (bot) => {
  bot.on('message', async (ctx) => {
    const text = ctx.message?.text;
    if (text !== undefined) await ctx.reply(text);
  });
  bot.on('callback_query', async (ctx) => {
    await ctx.answerCallbackQuery({ text: ctx.callbackQuery?.data ?? '' });
  });
};

export default echo;

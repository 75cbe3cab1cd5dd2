/**
 * `autoreply`: settings `{ greeting?: string, rules?: { [keyword]: reply }, fallback?: string }`.
 * `/start` gets the greeting; a message containing a keyword (case-insensitive,
 * first rule in insertion order wins) gets its reply; anything else the fallback,
 * or nothing when there is none. Settings hot-reload without a restart.
 */
import type { HandlerSetup } from './types.js';

interface AutoreplySettings {
  greeting: string;
  rules: Array<[string, string]>;
  fallback: string | undefined;
}

/** Read settings leniently: a wrong-typed field is ignored, never a crash. */
export function readAutoreplySettings(s: Record<string, unknown>): AutoreplySettings {
  const rules = typeof s.rules === 'object' && s.rules !== null && !Array.isArray(s.rules)
    ? Object.entries(s.rules as Record<string, unknown>)
      .filter((e): e is [string, string] => typeof e[1] === 'string')
      .map(([k, v]) => [k.toLowerCase(), v] as [string, string])
    : [];
  return {
    greeting: typeof s.greeting === 'string' ? s.greeting : 'Hello!',
    rules,
    fallback: typeof s.fallback === 'string' ? s.fallback : undefined,
  };
}

const autoreply: HandlerSetup = (bot, ctx) => {
  let current = readAutoreplySettings(ctx.settings);
  bot.command('start', async (c) => {
    await c.reply(current.greeting);
  });
  bot.on('message', async (c) => {
    const text = c.message?.text?.toLowerCase();
    if (text === undefined) return;
    const rule = current.rules.find(([keyword]) => text.includes(keyword));
    const reply = rule?.[1] ?? current.fallback;
    if (reply !== undefined) await c.reply(reply);
  });
  return {
    onSettings(settings) {
      current = readAutoreplySettings(settings);
    },
  };
};

export default autoreply;

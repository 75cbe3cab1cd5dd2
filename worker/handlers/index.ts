/**
 * Handler resolution: a built-in name (`echo`, `autoreply`, `handoff`) or a path
 * to an ES module (absolute, or relative to the botfleet home) whose default
 * export is a {@link HandlerSetup}.
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { ErrorCodes, fail } from '../../common/errors.js';
import autoreply from './autoreply.js';
import echo from './echo.js';
import handoff from './handoff.js';
import type { HandlerSetup } from './types.js';

/** The built-in handlers by name. */
export const BUILTIN_HANDLERS: Readonly<Record<string, HandlerSetup>> = { echo, autoreply, handoff };

/** True when `handler` names a built-in rather than a module path. */
export function isBuiltinHandler(handler: string): boolean {
  return Object.hasOwn(BUILTIN_HANDLERS, handler);
}

/**
 * Load a handler. @throws BotfleetError `BF_ERR_HANDLER_LOAD` when the module cannot
 * be imported or its default export is not a function.
 */
export async function loadHandler(handler: string, home: string): Promise<HandlerSetup> {
  if (isBuiltinHandler(handler)) return BUILTIN_HANDLERS[handler]!;
  const file = path.resolve(home, handler);
  let mod: { default?: unknown };
  try {
    mod = await import(pathToFileURL(file).href);
  } catch (err) {
    throw fail(ErrorCodes.HANDLER_LOAD, `handler module ${file} cannot be loaded: ${(err as Error).message.split('\n')[0]}`, err);
  }
  if (typeof mod.default !== 'function') throw fail(ErrorCodes.HANDLER_LOAD, `handler module ${file} has no default export function setup(bot, ctx)`);
  return mod.default as HandlerSetup;
}

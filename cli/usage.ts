/** Bad usage found by our own checks: exit 2 with a one-line reason (commander's own usage errors exit 2 too). */
import { CommanderError } from 'commander';

/** The commander error code of {@link usage} errors (cli/program.ts prints their message). */
export const USAGE = 'botfleet.usage';

/** @returns an error for the caller to throw: the command exits 2 with `message`. */
export function usage(message: string): CommanderError {
  return new CommanderError(2, USAGE, message);
}

/**
 * Every command's `--help` ends by naming the doc page that says more (docs/ in the
 * repository). A command not in {@link DOC_PAGES} gets its parent's page; the test
 * checks each named page exists.
 */
import type { Command } from 'commander';

/** Top-level command -> its page, relative to the repository root. */
export const DOC_PAGES: Readonly<Record<string, string>> = {
  botfleet: 'README.md and docs/',
  start: 'docs/configuration.md (every setting) and docs/deployment.md',
  stop: 'docs/operations.md',
  restart: 'docs/operations.md',
  status: 'docs/operations.md',
  describe: 'docs/operations.md',
  logs: 'docs/operations.md',
  bots: 'docs/operations.md and docs/handlers.md',
  dlq: 'docs/operations.md',
  demo: 'README.md',
  startup: 'docs/deployment.md',
  store: 'docs/operations.md (The store) and docs/deployment.md',
  cluster: 'docs/cluster.md',
};

/** Add the "More:" line to `cmd` and every command under it. */
export function linkHelpToDocs(cmd: Command, inherited = DOC_PAGES.botfleet!): void {
  const page = DOC_PAGES[cmd.name()] ?? inherited;
  cmd.addHelpText('after', `\nMore: ${page}`);
  for (const sub of cmd.commands) linkHelpToDocs(sub, page);
}

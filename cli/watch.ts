/** `botfleet status --watch`: the table redrawn every second (like `watch` or `pm2 monit`); colour only on a TTY without NO_COLOR. */
import { errorMessage } from '../common/errors.js';
import type { FleetStatus } from '../master/surfaces/status-server.js';
import { statusTable } from '../master/surfaces/status-table.js';

/** Redraw period, ms. */
export const WATCH_EVERY_MS = 1000;

/** True when colour may be used on stdout (a TTY, and NO_COLOR unset: https://no-color.org). */
export const colour = (): boolean => process.stdout.isTTY === true && !process.env.NO_COLOR;

/** Redraw until SIGINT (exit 0). A master that is down is said so, and the watch goes on. */
export async function watchStatus(fetchStatus: () => Promise<FleetStatus>): Promise<never> {
  const tty = process.stdout.isTTY === true;
  process.on('SIGINT', () => process.exit(0));
  process.stdout.on('error', () => process.exit(0)); // a closed pipe ends it quietly
  for (;;) {
    let text: string;
    try {
      text = statusTable(await fetchStatus(), colour());
    } catch (err) {
      text = `botfleet: ${errorMessage(err)}`;
    }
    // On a terminal: home and clear, as watch(1) does; elsewhere one table after another.
    process.stdout.write((tty ? '\x1b[H\x1b[2J' : '') + `${new Date().toISOString()}\n${text}\n${tty ? '' : '\n'}`);
    await new Promise((r) => setTimeout(r, WATCH_EVERY_MS));
  }
}

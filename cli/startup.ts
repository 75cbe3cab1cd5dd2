/**
 * `botfleet startup systemd [--user U] [--install]`: the shipped unit
 * (deploy/botfleet.service) with this installation's paths, as `pm2 startup` writes
 * one: this node, this package, this home. Printed, or written to
 * /etc/systemd/system/botfleet.service with `--install` (root only).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ErrorCodes, fail } from '../common/errors.js';
import { PACKAGE_ROOT } from '../master/host/worker-entry.js';

/** Where `--install` writes the unit. */
export const UNIT_PATH = '/etc/systemd/system/botfleet.service';
/** The shipped unit's own paths, replaced by this installation's. */
const SHIPPED = { code: '/opt/botfleet', node: '/usr/bin/node', home: '/var/lib/botfleet' };

/** What the unit is written for. */
export interface StartupTarget { home: string; user: string; node?: string; packageRoot?: string }

/**
 * The unit text for `t`. A home other than /var/lib/botfleet is not a systemd
 * StateDirectory: it is named in ReadWritePaths and must exist, owned by the user, mode 0711.
 * @throws BotfleetError `BF_ERR_BAD_INPUT` for a user name systemd would refuse
 */
export function systemdUnit(shipped: string, t: StartupTarget): string {
  if (!/^[a-z_][a-z0-9_-]{0,31}$/i.test(t.user)) throw fail(ErrorCodes.BAD_INPUT, `"${t.user}" is not a user name systemd accepts`);
  const code = t.packageRoot ?? PACKAGE_ROOT;
  const node = t.node ?? process.execPath;
  const home = path.resolve(t.home);
  let unit = shipped
    .replaceAll(`${SHIPPED.node} `, `${node} `)
    .replaceAll(SHIPPED.code, code)
    .replace(/^User=.*$/m, `User=${t.user}`)
    .replace(/^Group=.*$/m, `Group=${t.user}`);
  if (home !== SHIPPED.home) {
    unit = unit
      .replace(/^StateDirectory=.*\n/m, '')
      .replace(/^StateDirectoryMode=.*\n/m, `# The home ${home} must exist, owned by ${t.user}, mode 0711.\n`)
      .replaceAll(SHIPPED.home, home);
  }
  // ProtectHome=yes hides /home, /root and /run/user: read-only there, the home still writable by ReadWritePaths.
  if ([home, code, node].some((p) => /^\/(home|root|run\/user)(\/|$)/.test(p))) unit = unit.replace(/^ProtectHome=yes$/m, 'ProtectHome=read-only');
  return unit;
}

/** The shipped unit file of this package. */
export function shippedUnit(): string {
  return fs.readFileSync(path.join(PACKAGE_ROOT, 'deploy', 'botfleet.service'), 'utf8');
}

/** Print or install the unit. @throws BotfleetError `BF_ERR_BAD_INPUT` when `--install` is not run as root */
export function startupSystemd(home: string, o: { user?: string; install?: boolean }): string {
  const user = o.user ?? (process.getuid?.() === 0 ? 'botfleet' : os.userInfo().username);
  const unit = systemdUnit(shippedUnit(), { home, user });
  if (!o.install) return unit;
  if (process.getuid?.() !== 0) throw fail(ErrorCodes.BAD_INPUT, `--install writes ${UNIT_PATH}: run it as root`);
  fs.writeFileSync(UNIT_PATH, unit, { mode: 0o644 });
  return `wrote ${UNIT_PATH}; now: systemctl daemon-reload && systemctl enable --now botfleet`;
}

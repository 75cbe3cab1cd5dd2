/** Host tools some tests need (each test skips, saying why, where one is missing). */
import { spawnSync } from 'node:child_process';

/** The path of `name` on PATH, or null when it is not installed. */
export function which(name: string): string | null {
  const r = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

/** promtool's path (Debian's prometheus package, installed by .ci/run), or null. */
export const promtool = (): string | null => which('promtool');

/**
 * Read the journal file of a test fleet with the `sqlite3` CLI (Debian's sqlite3),
 * or better-sqlite3 when the CLI is missing: the file as another tool sees it.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import Database from 'better-sqlite3';

const hasSqliteCli = (() => {
  try {
    execFileSync('sqlite3', ['-version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

/** Run one read-only query on `<home>/data/journal.db`; rows as objects. */
export function journalQuery(home: string, sql: string): Array<Record<string, unknown>> {
  const file = path.join(home, 'data', 'journal.db');
  if (hasSqliteCli) {
    const out = execFileSync('sqlite3', ['-readonly', '-json', file, sql], { encoding: 'utf8' }).trim();
    return out === '' ? [] : (JSON.parse(out) as Array<Record<string, unknown>>);
  }
  const db = new Database(file, { readonly: true });
  try {
    return db.prepare(sql).all() as Array<Record<string, unknown>>;
  } finally {
    db.close();
  }
}

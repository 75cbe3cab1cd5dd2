/**
 * The journal's writer thread: owns the write connection to `journal.db` and applies
 * each batch the master posts in one transaction, then answers `{ seq }` (or
 * `{ seq, error }`). It runs off the master's event loop because a commit at
 * `JOURNAL_SYNC=full` waits for fsync (measured 0.26 ms a commit on the CI disk,
 * against 0.02 ms at `normal`), and the master's loop must not wait on the disk.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { journalWriter, openJournalDb, type JournalOps, type JournalSync } from './journal-sqlite.js';

const { file, sync } = workerData as { file: string; sync: JournalSync };
const db = openJournalDb(file, sync);
const write = journalWriter(db);

parentPort!.on('message', (m: { seq: number; ops: JournalOps } | 'close') => {
  if (m === 'close') {
    db.close();
    parentPort!.close();
    return;
  }
  try {
    write(m.ops);
    parentPort!.postMessage({ seq: m.seq });
  } catch (err) {
    parentPort!.postMessage({ seq: m.seq, error: (err as Error).message.split('\n')[0] });
  }
});
parentPort!.postMessage({ seq: 0 });

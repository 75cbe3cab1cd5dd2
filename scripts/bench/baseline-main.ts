/**
 * A webhook baseline (see baseline-server.ts) in a process of its own, as botfleet's
 * master runs in one: sharing the bench process's heap would bias whichever side
 * ran second. Usage: `node baseline-main.js <alone|ipc> <children>`; prints one JSON
 * line `{ url, botIds, pid }` once listening, and stops (children too) on SIGTERM.
 */
import { startBaseline } from './baseline-server.js';

const kind = process.argv[2] === 'alone' ? 'alone' : 'ipc';
const b = await startBaseline(kind, Number(process.argv[3] ?? 0));
process.stdout.write(`${JSON.stringify({ url: b.url, botIds: b.botIds, pid: process.pid })}\n`);
process.once('SIGTERM', () => void b.stop().then(() => process.exit(0)));

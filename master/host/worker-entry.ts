/** Where the worker's code is: the entry the master forks and the package it belongs to. */
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Worker entry: the compiled worker bundled into one file by `npm run build`
 * (esbuild; packages such as node-telegram-bot-api and pino stay external, so a
 * handler importing the library shares the worker's copy). Workers always run
 * compiled JS (tsx costs ~3x start time, DESIGN.md); one file instead of our ~13
 * modules saves ~5 ms of a ~90 ms start (ESM loading is ~0.4 ms per module, measured).
 */
export const WORKER_ENTRY = fileURLToPath(new URL('../../worker/bundle.js', import.meta.url));

/** The package root: dist/worker/bundle.js -> the directory holding dist/ and node_modules/. */
export const PACKAGE_ROOT = path.resolve(path.dirname(WORKER_ENTRY), '..', '..');

#!/usr/bin/env node
/**
 * The `botfleet` executable. It holds V8's young generation at its initial size
 * (master/host/heap.ts) before anything else loads, then runs the command line
 * (cli/program.ts). The order matters: loading the command line's modules is what
 * grows the young generation first (measured: with the hold set after those
 * imports, the master's new space had already grown to 8 MB committed; set here,
 * it stays at about 4 MB).
 */
import { holdYoungGeneration } from '../master/host/heap.js';

holdYoungGeneration();
await import('./program.js');

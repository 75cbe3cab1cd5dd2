/**
 * The master's V8 heap: its young generation stays at V8's initial semi-space size.
 * V8 grows the semi-spaces (up to 16 MiB each on 64-bit Node 20) after scavenges that
 * see many survivors, which the master's start (forking a fleet) always does, and never
 * gives the memory back while the master idles: measured at 50 idle polling bots, the
 * new space held 14.3 MB committed for 3.2 MB used, and the master's RSS fell from
 * 98 MB to 88 MB with the growth factor at 1. The master's live data is old-space
 * (registry rows, journal index), so scavenges stay cheap at a small young generation.
 *
 * `--semi-space-growth-factor` is read each time V8 grows the new space, so setting it
 * at run time takes effect (unlike `--max-semi-space-size`, fixed when the heap is
 * configured). Node documents `v8.setFlagsFromString` after start as unsupported in
 * general: a V8 that ignores the flag only loses the saving. Starting a worker thread
 * puts V8's flags back to the command line's (measured: the new space grew to 32 MB
 * after a `new Worker`), so the master holds it again once its journal writer runs.
 *
 * A master with a webhook server lets it grow again ({@link releaseYoungGeneration}):
 * held, the webhook fan-out fell from 0.95 to 0.68 of the baseline, released it measured
 * 0.94 (bench measure 4, 15 rounds each).
 */
import v8 from 'node:v8';

/** Stop the master's young generation from growing (see the module comment). Idempotent; call again after starting a worker thread. */
export function holdYoungGeneration(): void {
  v8.setFlagsFromString('--semi-space-growth-factor=1');
}

/** V8's default growth again (factor 2, Node 20's default): for a master that serves webhooks, where the young generation is throughput. */
export function releaseYoungGeneration(): void {
  v8.setFlagsFromString('--semi-space-growth-factor=2');
}

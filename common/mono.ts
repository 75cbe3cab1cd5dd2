/**
 * The machine's monotonic clock in ms (`process.hrtime`: CLOCK_MONOTONIC on Linux), which a
 * master and its workers share, unlike `performance.now()` (each process counts from its own
 * start). The cluster's lease deadline is handed to workers in it.
 */
export const machineMonoMs = (): number => Number(process.hrtime.bigint() / 1_000_000n);

/**
 * The memory reserve (MEMORY_RESERVE_MB; the scale issue): a new worker starts only while the
 * machine's available memory, less what the workers still starting will take, stays above
 * the reserve. Pure apart from the reader it is given (host/meminfo.ts in the master, a fake
 * in tests); the reading is cached for {@link READ_EVERY_MS}.
 */

/** What a starting worker is counted as before MemAvailable shows it: an idle worker's private memory is ~10 MB (docs/benchmarks.md, PSS 8.8 MB), its first allocations about as much again; rounded up. */
export const STARTING_WORKER_BYTES = 32 * 1024 * 1024;
/** MemAvailable is read at most this often (ms). */
export const READ_EVERY_MS = 250;
/** A bot held back by the reserve is tried again this often (ms). */
export const ROOM_RECHECK_MS = 1000;

/** The reserve's verdict. */
export interface MemoryRoom {
  /** Why a worker may not start now (a pending reason), or null. `starting`: workers forked and not yet ready; `now`: ms. */
  why(starting: number, now: number): string | null;
}

/** A reserve of `reserveBytes` (0: off) over `read` (bytes available, or null where unknown: no check). */
export function createMemoryRoom(reserveBytes: number, read: (() => number | null) | undefined): MemoryRoom {
  let at = -Infinity;
  let available: number | null = null;
  return {
    why(starting, now) {
      if (reserveBytes <= 0 || !read) return null;
      if (now - at >= READ_EVERY_MS) (available = read()), (at = now);
      if (available === null || available - starting * STARTING_WORKER_BYTES >= reserveBytes) return null;
      const mb = (b: number) => Math.round(b / 1048576);
      return `memory reserve: ${mb(available)} MB available${starting > 0 ? `, ${starting} worker(s) still starting` : ''}, ${mb(reserveBytes)} MB kept free (MEMORY_RESERVE_MB)`;
    },
  };
}

/**
 * The machine's available memory, as the kernel estimates it: `MemAvailable` in
 * /proc/meminfo (Linux 3.14+: free memory plus what can be reclaimed without swapping, the
 * figure `free` shows as "available"). Reading it costs about 50 µs; callers cache it.
 */
import fs from 'node:fs';

/** MemAvailable in bytes, or null where there is none (not Linux, or unreadable). */
export function availableMemoryBytes(file = '/proc/meminfo'): number | null {
  try {
    const m = /^MemAvailable:\s+(\d+) kB$/m.exec(fs.readFileSync(file, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/**
 * One batched pidusage call per round for every live child: RSS (bytes) and CPU
 * (percent of one core since the previous sample). About 2.5 ms per 100 pids
 * (DESIGN.md). A pid that vanished between rounds is simply absent from the result.
 */
import pidusage from 'pidusage';

/** RSS bytes and CPU percent per pid. */
export type Samples = Map<number, { rssBytes: number; cpuPercent: number }>;

export async function sampleProcesses(pids: number[]): Promise<Samples> {
  const out: Samples = new Map();
  if (pids.length === 0) return out;
  let stats: Record<string, pidusage.Status | null>;
  try {
    stats = (await pidusage(pids)) as Record<string, pidusage.Status | null>;
  } catch {
    return out; // every pid gone; the exit handlers deal with it
  }
  for (const pid of pids) {
    const s = stats[String(pid)];
    if (s && typeof s.memory === 'number') out.set(pid, { rssBytes: s.memory, cpuPercent: s.cpu });
  }
  return out;
}


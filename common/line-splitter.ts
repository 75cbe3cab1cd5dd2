/**
 * A bounded, linear-time line splitter for bytes we do not trust (a worker's
 * stdout/stderr, its message channel, a control-socket client). Each chunk is
 * scanned once for `\n`; a pending partial line is kept as a list of chunks, never
 * re-scanned (the old splitter re-joined and re-split the pending line on every
 * chunk: 64 MiB without a newline cost the master 72 s of CPU). A line longer than
 * `maxLineBytes` is handed over cut to that length with `truncated: true`, and the
 * rest of it, up to its newline, is skipped: memory held per stream is at most
 * `maxLineBytes` plus one chunk.
 */

/** What {@link createLineSplitter} needs. */
export interface LineSplitterOptions {
  /** Longest line kept, in bytes (without the newline). */
  maxLineBytes: number;
  /** A complete line (or the first `maxLineBytes` of a longer one, `truncated` true). Empty lines are skipped. */
  onLine(line: Buffer, truncated: boolean): void;
}

/** A splitter fed with chunks as they arrive. */
export interface LineSplitter {
  push(chunk: Buffer): void;
  /** The stream ended: a pending partial line is handed over as a line. */
  end(): void;
  /** Bytes held for the pending partial line (bounded by `maxLineBytes`). */
  pendingBytes(): number;
}

const NL = 0x0a;

/** Create a splitter. Never throws on any input; `onLine` exceptions propagate to the caller of `push`. */
export function createLineSplitter(o: LineSplitterOptions): LineSplitter {
  let parts: Buffer[] = [];
  let pending = 0;
  /** Inside a line already handed over truncated: drop bytes until its newline. */
  let skipping = false;

  const keep = (seg: Buffer): void => {
    if (skipping || seg.length === 0) return;
    const room = o.maxLineBytes - pending;
    if (seg.length <= room) {
      parts.push(seg);
      pending += seg.length;
      return;
    }
    // Over the cap: hand over what fits, skip the rest of this line.
    parts.push(seg.subarray(0, room));
    const line = Buffer.concat(parts, o.maxLineBytes);
    parts = [];
    pending = 0;
    skipping = true;
    o.onLine(line, true);
  };

  const finishLine = (): void => {
    if (skipping) {
      skipping = false;
      return;
    }
    if (pending === 0) return;
    const line = parts.length === 1 ? parts[0]! : Buffer.concat(parts, pending);
    parts = [];
    pending = 0;
    o.onLine(line, false);
  };

  return {
    push(chunk) {
      let start = 0;
      for (;;) {
        const nl = chunk.indexOf(NL, start);
        if (nl < 0) break;
        keep(chunk.subarray(start, nl));
        finishLine();
        start = nl + 1;
      }
      // Copy the tail only when it is small relative to the chunk, so one held byte does not pin a 64 KiB buffer.
      if (start < chunk.length) keep(chunk.length - start < 4096 ? Buffer.from(chunk.subarray(start)) : chunk.subarray(start));
    },
    end() {
      finishLine();
      skipping = false;
    },
    pendingBytes: () => pending,
  };
}

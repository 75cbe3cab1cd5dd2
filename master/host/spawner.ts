/**
 * Spawning a process without stalling the master's loop: the spawn itself runs on a thread
 * of its own (spawner-thread.ts, where the measured stall is), and the child's stdio are
 * socket pairs the master made, so the master reads and writes them on its own loop as it
 * did with libuv's pipes (those are socket pairs too).
 *
 * Node has no socketpair(2), so a pair is one connection to a listening socket in Linux's
 * abstract namespace (unix(7): no file to leave behind): the connecting end's fd goes to
 * the child, the accepted end stays here. The accepted end is matched to its request by a
 * 128-bit random nonce the connecting end writes first; a stranger connecting (any process
 * of the host's network namespace can) is read at most {@link NONCE_BYTES} bytes and
 * dropped. The master's copy of the child's end is closed once the child has it.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { Worker } from 'node:worker_threads';
import { ErrorCodes, fail } from '../../common/errors.js';

/** A request to the spawner thread: `fds` become the child's fds 1, 2, 3, ... (fd 0 is /dev/null). */
export interface SpawnRequest { id: number; file: string; args: string[]; env: NodeJS.ProcessEnv; fds: number[]; uid?: number; gid?: number }

/** The thread's answers: the pid, or why the kernel refused; later the exit (code or signal, as Node's 'exit'). */
export type SpawnReply =
  | { type: 'spawned'; id: number; pid: number }
  | { type: 'failed'; id: number; message: string; code?: string; path?: string }
  | { type: 'exit'; id: number; code: number | null; signal: NodeJS.Signals | null };

/** How a spawned process ended. */
export interface SpawnExit { code: number | null; signal: NodeJS.Signals | null }

/** A process started by {@link spawnOffLoop}. */
export interface SpawnedProcess {
  pid: number;
  /** The master's ends of the child's fds 1, 2, 3, ... in order (readable and writable sockets). */
  stdio: net.Socket[];
  /** Resolves when the process has exited (reaped by the spawner thread). */
  exited: Promise<SpawnExit>;
  /** The exit once known, else null. */
  exit(): SpawnExit | null;
}

/** Options of {@link spawnOffLoop}: the child is always detached (its own process group). */
export interface SpawnOptions { env: NodeJS.ProcessEnv; stdio: number; uid?: number; gid?: number }

/** Bytes of the nonce that names a pair. */
const NONCE_BYTES = 16;
/** How long a connection may take to name itself, and a pair to be accepted (ms); both are local and immediate. */
const PAIR_DEADLINE_MS = 5000;

/** One socket pair: `ours` stays with the master, `theirs` (whose `fd` the child gets) is closed here once the child has it. */
interface Pair { ours: net.Socket; theirs: net.Socket; fd: number }

/** Pairs kept made ahead: two workers' worth (each 2 fds in the master). */
export const SPARE_PAIRS = 8;

/** The listening socket of the pairs (one per process, made on first use, unref'd). */
class PairServer {
  private readonly waiting = new Map<string, (s: net.Socket) => void>();
  private readonly address = `\0botfleet-spawner-${process.pid}-${randomBytes(8).toString('hex')}`;
  private readonly server = net.createServer((s) => this.name(s));
  private readonly spares: Pair[] = [];
  private refilling = false;
  readonly ready: Promise<void>;

  constructor() {
    this.ready = new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.address, () => resolve());
    });
    this.server.on('error', () => undefined);
    this.server.unref();
  }

  /**
   * `n` connected pairs, spares first (made ahead, off the fork's path), the rest made now in
   * parallel; spares are made again in the background. @throws BotfleetError `BF_ERR_FORK` (EMFILE, the deadline)
   */
  async take(n: number): Promise<Pair[]> {
    const got = this.spares.splice(0, n);
    for (const p of got) (p.ours.ref(), p.theirs.ref());
    try {
      got.push(...await Promise.all(Array.from({ length: n - got.length }, () => this.pair())));
    } catch (err) {
      for (const p of got) (p.ours.destroy(), p.theirs.destroy());
      throw err;
    }
    this.refill();
    return got;
  }

  spareCount(): number {
    return this.spares.length;
  }

  /** Make spares up to SPARE_PAIRS, one refill at a time; a failure (EMFILE) leaves it to the next take. */
  private refill(): void {
    if (this.refilling || this.spares.length >= SPARE_PAIRS) return;
    this.refilling = true;
    void this.pair().then((p) => {
      p.ours.unref();
      p.theirs.unref();
      this.spares.push(p);
      this.refilling = false;
      this.refill();
    }, () => (this.refilling = false));
  }

  /** One connected pair: `ours` stays with the master, `theirs` (its fd) goes to the child. @throws BotfleetError `BF_ERR_FORK` */
  private async pair(): Promise<Pair> {
    const nonce = randomBytes(NONCE_BYTES).toString('hex');
    const accepted = new Promise<net.Socket>((resolve) => this.waiting.set(nonce, resolve));
    const theirs = net.connect({ path: this.address });
    theirs.pause(); // the child's end: never read here (what the master writes is the child's)
    theirs.on('error', () => undefined); // the connect's error is taken below; later ones have no one to tell
    let timer: NodeJS.Timeout | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        theirs.once('connect', () => resolve());
        theirs.once('error', reject);
      });
      await new Promise<void>((resolve, reject) => theirs.write(Buffer.from(nonce, 'hex'), (e) => (e ? reject(e) : resolve())));
      const ours = await Promise.race([accepted, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('socket pair not accepted in time')), PAIR_DEADLINE_MS)))]);
      const handle = (theirs as unknown as { _handle?: { fd?: number; setBlocking?(on: boolean): number } })._handle;
      const fd = handle?.fd;
      if (typeof fd !== 'number' || fd < 0) throw new Error('socket pair has no fd');
      // The child's end blocking, as libuv's own stdio pairs are (the master never uses this end again).
      handle!.setBlocking?.(true);
      return { ours, theirs, fd };
    } catch (err) {
      this.waiting.delete(nonce);
      theirs.destroy();
      throw fail(ErrorCodes.FORK, `fork failed: ${(err as Error).message}`, err);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Read a new connection's nonce (at most NONCE_BYTES, within the deadline); hand it to its waiter or drop it. */
  private name(s: net.Socket): void {
    s.on('error', () => undefined);
    const timer = setTimeout(() => s.destroy(), PAIR_DEADLINE_MS);
    const onReadable = () => {
      const nonce = s.read(NONCE_BYTES) as Buffer | null;
      if (nonce === null) return;
      s.off('readable', onReadable);
      clearTimeout(timer);
      const key = nonce.toString('hex');
      const waiter = this.waiting.get(key);
      this.waiting.delete(key);
      if (waiter) waiter(s);
      else s.destroy();
    };
    s.on('readable', onReadable);
  }
}

/** The spawner thread and the processes it spawned. */
class Spawner {
  private readonly worker = new Worker(new URL('./spawner-thread.js', import.meta.url), { resourceLimits: { maxOldGenerationSizeMb: 32 } });
  private seq = 0;
  private readonly starts = new Map<number, (r: Extract<SpawnReply, { type: 'spawned' | 'failed' }>) => void>();
  private readonly exits = new Map<number, (e: SpawnExit) => void>();
  private dead = false;
  /** Spawns in flight and processes not yet exited: the thread keeps the process alive while any is (as a ChildProcess does). */
  private live = 0;

  constructor(private readonly onDead: () => void) {
    this.worker.on('message', (m: SpawnReply) => {
      if (m.type === 'exit') {
        this.exits.get(m.id)?.({ code: m.code, signal: m.signal });
        this.exits.delete(m.id);
      } else {
        this.starts.get(m.id)?.(m);
        this.starts.delete(m.id);
      }
    });
    const died = () => this.died();
    this.worker.on('error', died);
    this.worker.on('exit', died);
    this.worker.unref(); // after the listeners: a 'message' listener refs the thread's port again
  }

  private hold(): void {
    if (this.live++ === 0) this.worker.ref();
  }

  private letGo(): void {
    if (--this.live === 0) this.worker.unref();
  }

  /** Spawn through the thread. @returns the pid and the exit to come, or the kernel's refusal */
  start(r: Omit<SpawnRequest, 'id'>): Promise<{ reply: Extract<SpawnReply, { type: 'spawned' | 'failed' }>; exited: Promise<SpawnExit> }> {
    const id = ++this.seq;
    this.hold();
    const exited = new Promise<SpawnExit>((resolve) => this.exits.set(id, resolve)).finally(() => this.letGo());
    const reply = new Promise<Extract<SpawnReply, { type: 'spawned' | 'failed' }>>((resolve) => this.starts.set(id, resolve));
    this.worker.postMessage({ ...r, id } satisfies SpawnRequest);
    return reply.then((m) => {
      if (m.type === 'failed' && this.exits.delete(id)) this.letGo();
      return { reply: m, exited };
    });
  }

  /**
   * The thread ended (it should not: its input is ours). Spawns in flight fail; a process it
   * spawned is reported exited at once (code and signal unknown: null), since nothing can
   * reap it any more: the supervisor kills its group as after any exit and starts anew.
   */
  private died(): void {
    if (this.dead) return;
    this.dead = true;
    for (const s of this.starts.values()) s({ type: 'failed', id: 0, message: 'the spawner thread ended' });
    this.starts.clear();
    for (const e of this.exits.values()) e({ code: null, signal: null });
    this.exits.clear();
    this.onDead();
  }
}

let pairs: PairServer | null = null;
let spawner: Spawner | null = null;

/** Socket pairs made ahead and not yet taken (0 before the first spawn); for tests: the master's fds while idle are these. */
export const sparePairs = (): number => pairs?.spareCount() ?? 0;

/**
 * Spawn `file args` detached (its own process group), with fd 0 on /dev/null and `stdio`
 * socket pairs as its fds 1..stdio, without blocking the calling loop on fork/exec.
 * @throws BotfleetError `BF_ERR_FORK` when it could not start; its `spawnError` resolves to
 * the kernel's error (code and path) as with child_process (see child-process.ts).
 */
export async function spawnOffLoop(file: string, args: string[], o: SpawnOptions): Promise<SpawnedProcess> {
  const server = (pairs ??= new PairServer());
  await server.ready.catch((err: Error) => {
    if (pairs === server) pairs = null; // the next spawn tries to listen again
    throw fail(ErrorCodes.FORK, `fork failed: the spawner's socket cannot listen: ${err.message}`, err);
  });
  const made = await server.take(o.stdio);
  spawner ??= new Spawner(() => (spawner = null));
  const { reply, exited } = await spawner.start({ file, args, env: o.env, fds: made.map((p) => p.fd), uid: o.uid, gid: o.gid });
  for (const p of made) p.theirs.destroy(); // the child has its copies now
  if (reply.type === 'failed') {
    for (const p of made) p.ours.destroy();
    const spawnError = Object.assign(new Error(reply.message), { code: reply.code, path: reply.path });
    throw Object.assign(fail(ErrorCodes.FORK, `fork failed: ${reply.message}`), { spawnError: Promise.resolve(spawnError) });
  }
  let exit: SpawnExit | null = null;
  const watched = exited.then((e) => (exit = e));
  return { pid: reply.pid, stdio: made.map((p) => p.ours), exited: watched, exit: () => exit };
}

// The primary process of `workers: N` (N > 1): forks the workers (each a full proxy on the same listen
// port, cluster round-robin), holds what they share and keeps them going:
//
//   - the fetch locks (cross-worker coalescing) and the hand-off store (coord/ipc.ts says what each is);
//   - the broadcast: an invalidation or control message is relayed to every other worker and answered
//     once each has applied it, so the admin API (which waits for it) answers for the whole instance;
//   - a worker that dies is logged and replaced (same index, so the admin worker comes back as one);
//     its locks are released at once as `expired`, so its waiters take over instead of waiting out a TTL;
//   - SIGTERM/SIGINT drain every worker (each stops gracefully within proxy.drain_timeout), SIGHUP reloads
//     (through the admin worker, which relays the reload to the others).
import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';
import { banTest } from '../cache/invalidate.ts';
import type { Config } from '../config/schema.ts';
import { GATHER_TIMEOUT_MS, outbox, PUBLISH_TIMEOUT_MS, unpack, type IpcDown, type IpcNotice, type IpcRequest } from '../coord/ipc.ts';
import type { CoordMessage, Invalidation, SharedObject, UnlockWait } from '../coord/types.ts';
import { HEAP_MARK, withHeapFlags } from '../ops/node-flags.ts';

/** Tag of the workers' own messages to the primary (ready), apart from coordination. */
export const WORKER_TAG = 'lacquer:worker';
/** What a worker tells the primary once it listens (`backends`: each as `pool/name origin`, for the start line). */
export type ReadyMessage = { tag: typeof WORKER_TAG; t: 'ready'; index: number; address: string; admin?: string; backends: string[] };
/** A worker that cannot start: its one line saying why (serve.ts), printed once by the primary for the instance. */
export type FailedMessage = { tag: typeof WORKER_TAG; t: 'failed'; line: string };

/**
 * The gather the admin worker runs once a second for the instance's figures (workers/worker.ts): every worker
 * answers with its own, and the primary adds its hand-off store's.
 */
export const FIGURES = 'figures';

/** How long an object stays in the hand-off store: enough for the waiters of its lock to pick it up. */
const HANDOFF_MS = 10_000;
/** A worker that keeps dying is replaced at most this often (a crash loop must not fork-bomb the host). */
const RESPAWN_MIN_MS = 1000;

/**
 * The share of `cache.memory` each worker's own cache gets, and the hand-off store's (README "Workers"). A
 * thirty-second, at most 16 MiB: the store holds bodies up to EAGER_MAX_BYTES (coord/ipc.ts) and, for
 * larger ones, an entry of about 512 bytes (the body stays with its worker), each for at most 10 s.
 */
export function memorySplit(memory: number, workers: number): { perWorker: number; handoff: number } {
  const handoff = Math.min(Math.floor(memory / 32), 16 * 1024 * 1024);
  return { perWorker: Math.floor((memory - handoff) / workers), handoff };
}

/**
 * Worker `index`'s share of an instance-wide limit (`max_connections`, `max_concurrency`): the limits protect
 * the origin, and each worker has its own slots, so N workers each allowed the whole limit would send it N
 * times as many requests. The remainder goes to the first workers (the shares add up to the limit); a limit
 * smaller than the number of workers gives each worker 1 (a worker with no slot could never fetch).
 */
export function limitShare(limit: number, workers: number, index: number): number {
  return Math.max(1, Math.floor(limit / workers) + (index < limit % workers ? 1 : 0));
}

type Held = { owner: number; timer: NodeJS.Timeout; waiters: { worker: number; rid: number }[] };
/** `holder`: the worker that keeps the body of a lazy put (`o.body` is then empty); undefined when the body is here. */
type Stored = { o: SharedObject; until: number; bytes: number; holder: number | undefined };
/** A pull waiting for its holder's answer, and the lookups that wait for it. */
type Pull = { holder: number; key: string; timer: NodeJS.Timeout; then: ((o: SharedObject | undefined) => void)[] };

/** How long a lookup waits for the holder of a lazy body (below the worker's REQUEST_TIMEOUT_MS of 1 s). */
const PULL_TIMEOUT_MS = 500;

/** The primary's state, apart from process management (unit-testable without forking). */
export class PrimaryHub {
  readonly #locks = new Map<string, Held>();
  /** primary key → variant key → object */
  readonly #store = new Map<string, Map<string, Stored>>();
  #bytes = 0;
  readonly #maxBytes: number;
  #aid = 0;
  /** Publishes waiting for acks and gathers waiting for data: id → workers still to answer, what they sent, the answer to send when none is left. */
  readonly #fanouts = new Map<number, { left: Set<number>; data: unknown[]; done: () => void }>();
  readonly #send: (worker: number, m: IpcDown) => void;
  readonly #workers: () => number[];
  /** Pulls in flight by id, and by `holder key` so concurrent lookups of one object share one pull. */
  readonly #pulls = new Map<number, Pull>();
  readonly #pulling = new Map<string, Pull>();
  #pid = 0;
  /** Counts invalidations: a pull answered after one began is dropped (the holder may have sent it before applying it). */
  #generation = 0;

  constructor(o: { maxBytes: number; send: (worker: number, m: IpcDown) => void; workers: () => number[] }) {
    this.#maxBytes = o.maxBytes;
    this.#send = o.send;
    this.#workers = o.workers;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** What the hand-off store holds now (shown in /api/stats beside the workers' caches). */
  handoffFigures(): { objects: number; bytes: number; maxBytes: number } {
    let objects = 0;
    for (const v of this.#store.values()) objects += v.size;
    return { objects, bytes: this.#bytes, maxBytes: this.#maxBytes };
  }

  handle(from: number, m: IpcRequest | IpcNotice): void {
    switch (m.t) {
      case 'lookup':
        return this.#lookup(m.primary, (found) => this.#reply(from, m.rid, found));
      case 'put':
        return this.#put(m.object, m.ttlMs, m.lazy ? from : undefined);
      case 'pulled':
        return this.#pulled(from, m.pid, m.object);
      case 'miss':
        return this.#lookup(m.primary, (found) => this.#reply(from, m.rid, found.length > 0 ? { found } : { found, lock: this.#lock(from, m.key, m.ttlMs) }));
      case 'lock':
        return this.#reply(from, m.rid, this.#lock(from, m.key, m.ttlMs));
      case 'release': {
        const held = this.#locks.get(m.key);
        if (held && held.owner === from) this.#unlock(m.key, m.outcome);
        return;
      }
      case 'wait': {
        const held = this.#locks.get(m.key);
        // Released between the lock attempt and this wait: look again (the holder's put landed before its release).
        if (!held) return this.#reply(from, m.rid, 'expired' satisfies UnlockWait);
        held.waiters.push({ worker: from, rid: m.rid });
        return;
      }
      case 'publish':
        return this.#publish(from, m.rid, m.message);
      case 'gather':
        return this.#fanout(from, m.rid, GATHER_TIMEOUT_MS, (cid) => ({ t: 'collect', cid, what: m.what }), m.what === FIGURES ? [{ handoff: this.handoffFigures() }] : []);
      case 'collected':
        return this.#answered(from, m.cid, m.data);
      case 'ack':
        return this.#answered(from, m.aid, undefined);
    }
  }

  #lock(from: number, key: string, ttlMs: number): 'acquired' | 'held' {
    if (this.#locks.has(key)) return 'held';
    const timer = setTimeout(() => this.#unlock(key, 'expired'), ttlMs);
    timer.unref();
    this.#locks.set(key, { owner: from, timer, waiters: [] });
    return 'acquired';
  }

  /** A worker is gone: its locks expire now (a waiter takes over), no publish or pull waits for it, and the bodies it kept are gone with it. */
  workerGone(id: number): void {
    for (const [pid, p] of this.#pulls) if (p.holder === id) this.#pulled(id, pid, undefined);
    for (const [primary, variants] of [...this.#store]) for (const [key, s] of [...variants]) if (s.holder === id) this.#remove(primary, key);
    for (const [key, held] of this.#locks) {
      if (held.owner === id) this.#unlock(key, 'expired');
      else held.waiters = held.waiters.filter((w) => w.worker !== id);
    }
    for (const [fid] of this.#fanouts) this.#answered(id, fid, undefined);
  }

  #answered(from: number, id: number, data: unknown): void {
    const f = this.#fanouts.get(id);
    if (!f || !f.left.delete(from)) return;
    if (data !== undefined) f.data.push(data);
    if (f.left.size === 0) f.done();
  }

  /**
   * Sends `build(id)` to every other worker and answers the requester with what they sent back (acks carry
   * nothing) once all have answered or died, or `timeoutMs` passed; `data` starts with what the primary adds.
   */
  #fanout(from: number, rid: number, timeoutMs: number, build: (id: number) => IpcDown, data: unknown[] = []): void {
    const targets = this.#workers().filter((w) => w !== from);
    const id = ++this.#aid;
    let answered = false;
    const done = () => {
      if (answered) return;
      answered = true;
      clearTimeout(timer);
      this.#fanouts.delete(id);
      this.#reply(from, rid, data);
    };
    const timer = setTimeout(done, timeoutMs);
    timer.unref();
    if (targets.length === 0) return done();
    this.#fanouts.set(id, { left: new Set(targets), data, done });
    for (const w of targets) this.#send(w, build(id));
  }

  #reply(worker: number, rid: number, value: unknown): void {
    this.#send(worker, { t: 'reply', rid, value });
  }

  #unlock(key: string, outcome: UnlockWait): void {
    const held = this.#locks.get(key);
    if (!held) return;
    clearTimeout(held.timer);
    this.#locks.delete(key);
    for (const w of held.waiters) this.#reply(w.worker, w.rid, outcome);
  }

  /** The primary's variants, each with its body: those kept by their holder are pulled from it first. */
  #lookup(primary: string, answer: (found: SharedObject[]) => void): void {
    const variants = this.#store.get(primary);
    if (!variants) return answer([]);
    const now = Date.now();
    const out: SharedObject[] = [];
    const lazy: Stored[] = [];
    for (const [key, s] of variants) {
      if (s.until <= now) this.#remove(primary, key);
      else if (s.holder === undefined) out.push(s.o);
      else lazy.push(s);
    }
    if (lazy.length === 0) return answer(out);
    const generation = this.#generation;
    let left = lazy.length;
    for (const s of lazy) {
      this.#pull(s.holder!, s.o.key, (o) => {
        // A purge since the pull began may have reached the holder after it answered: not served (a miss).
        // The entry's own state (a soft purge's invalidatedAt) goes with the holder's copy.
        if (o && o.key === s.o.key && generation === this.#generation) out.push(s.o.invalidatedAt === undefined ? o : { ...o, invalidatedAt: s.o.invalidatedAt });
        if (--left === 0) answer(out);
      });
    }
  }

  #pull(holder: number, key: string, then: (o: SharedObject | undefined) => void): void {
    const at = `${holder} ${key}`;
    const going = this.#pulling.get(at);
    if (going) return void going.then.push(then);
    const pid = ++this.#pid;
    const timer = setTimeout(() => this.#pulled(holder, pid, undefined), PULL_TIMEOUT_MS);
    timer.unref();
    const p: Pull = { holder, key: at, timer, then: [then] };
    this.#pulls.set(pid, p);
    this.#pulling.set(at, p);
    this.#send(holder, { t: 'pull', pid, key });
  }

  #pulled(from: number, pid: number, o: SharedObject | undefined): void {
    const p = this.#pulls.get(pid);
    if (!p || p.holder !== from) return;
    clearTimeout(p.timer);
    this.#pulls.delete(pid);
    this.#pulling.delete(p.key);
    for (const then of p.then) then(o);
  }

  /** `holder`: the worker that kept the body (a lazy put); the entry alone is charged here. */
  #put(o: SharedObject, ttlMs: number, holder: number | undefined): void {
    const bytes = o.body.length + 512;
    if (bytes > this.#maxBytes) return;
    this.#remove(o.primary, o.key);
    // Oldest first out (Map order is insertion order) until the new one fits.
    for (const [p, variants] of this.#store) {
      if (this.#bytes + bytes <= this.#maxBytes) break;
      for (const k of variants.keys()) this.#remove(p, k);
    }
    let variants = this.#store.get(o.primary);
    if (!variants) this.#store.set(o.primary, (variants = new Map()));
    variants.set(o.key, { o, until: Date.now() + Math.min(ttlMs, HANDOFF_MS), bytes, holder });
    this.#bytes += bytes;
  }

  #remove(primary: string, key: string): void {
    const variants = this.#store.get(primary);
    const s = variants?.get(key);
    if (!s) return;
    variants!.delete(key);
    this.#bytes -= s.bytes;
    if (variants!.size === 0) this.#store.delete(primary);
  }

  /** Applies an invalidation to the hand-off store (the workers apply it to their own caches). */
  invalidate(inv: Invalidation): void {
    this.#generation++;
    const now = Date.now();
    const hit = (s: Stored) => {
      if (inv.mode === 'hard') this.#remove(s.o.primary, s.o.key);
      else s.o = { ...s.o, invalidatedAt: now };
    };
    const all = () => [...this.#store.values()].flatMap((v) => [...v.values()]);
    if (inv.op === 'purge') for (const s of [...(this.#store.get(inv.primary)?.values() ?? [])]) hit(s);
    else if (inv.op === 'all') for (const s of all()) hit(s);
    else if (inv.op === 'tags') {
      const want = new Set(inv.tags);
      for (const s of all()) if (s.o.tags.some((t) => want.has(t))) hit(s);
    } else {
      let test: (p: string) => boolean;
      try {
        test = banTest(inv.spec);
      } catch {
        test = () => true; // a pattern that does not compile here: drop everything rather than keep what it banned
      }
      for (const s of all()) if (test(s.o.primary)) hit(s);
    }
  }

  #publish(from: number, rid: number, message: CoordMessage): void {
    if (message.kind === 'invalidate') this.invalidate(message.inv);
    this.#fanout(from, rid, PUBLISH_TIMEOUT_MS, (aid) => ({ t: 'deliver', aid, message }));
  }
}

/** SO_REUSEPORT where the platform has it and the port is fixed (with port 0 each worker would get its own). */
export function balanceOf(config: Config): 'reuseport' | 'cluster' {
  const port = Number(config.listen[0]!.address.slice(config.listen[0]!.address.lastIndexOf(':') + 1));
  return config.workers_balance === 'reuseport' && process.platform === 'linux' && port !== 0 ? 'reuseport' : 'cluster';
}

/**
 * The workers' node flags: the primary's, with Lacquer's semi-space size (not the primary's own smaller one)
 * unless the operator chose one (ops/node-flags.ts).
 */
export function workerExecArgv(execArgv: readonly string[], nodeOptions: string | undefined, mark = process.env[HEAP_MARK]): string[] {
  return withHeapFlags(execArgv, nodeOptions, mark);
}

/**
 * `os.availableParallelism()` for `auto`, except in a fleet: its instances coordinate through Redis, and the
 * workers of one instance coordinate through their primary instead (coord/ipc.ts), which would leave the
 * fleet's Redis unused — so a fleet instance runs one process (an explicit N > 1 with `fleet` is refused:
 * config/semantics.ts).
 */
export function workerCount(setting: Config['workers'], cores: number, fleet = false): number {
  if (setting !== 'auto') return setting;
  return fleet ? 1 : Math.max(1, cores);
}

/**
 * Runs the primary until SIGTERM/SIGINT: forks `n` workers running `lacquer serve` (this same command
 * line; `cluster.isWorker` sends them down the worker path of serve.ts) and resolves when all have exited.
 */
export function runPrimary(config: Config, n: number, log: Logger): Promise<number> {
  const { handoff } = memorySplit(config.cache.memory, n);
  const reusePort = balanceOf(config) === 'reuseport';
  // 'advanced' serialisation carries Buffers (object bodies) as bytes, not as JSON arrays.
  cluster.setupPrimary({ serialization: 'advanced', execArgv: workerExecArgv(process.execArgv, process.env.NODE_OPTIONS) });
  const byIndex = new Map<number, Worker>();
  const indexOf = new Map<number, number>();
  const lastFork = new Map<number, number>();
  const ready = new Map<number, ReadyMessage>();
  let stopping = false;
  let announced = false;
  let failureSaid = false;
  // One outbox per worker: a turn's replies to it leave in one write (coord/ipc.ts outbox).
  const outboxes = new Map<number, (m: IpcDown) => void>();
  const hub = new PrimaryHub({
    maxBytes: handoff,
    send: (id, m) => {
      let out = outboxes.get(id);
      if (!out) {
        out = outbox<IpcDown>(
          (e) => {
            const w = cluster.workers?.[id];
            if (w?.isConnected()) w.send(e);
          },
          () => undefined, // a worker gone: its requests time out on its side, and it is gone anyway
        );
        outboxes.set(id, out);
      }
      out(m);
    },
    workers: () => Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w && w.isConnected()).map((w) => w.id),
  });

  const fork = (index: number) => {
    lastFork.set(index, Date.now());
    const w = cluster.fork({ LACQUER_WORKER_INDEX: String(index), LACQUER_WORKERS: String(n), LACQUER_REUSEPORT: reusePort ? '1' : '0' });
    byIndex.set(index, w);
    indexOf.set(w.id, index);
    w.on('message', (raw: unknown) => {
      if (!raw || typeof raw !== 'object') return;
      const tag = (raw as { tag?: unknown }).tag;
      const coord = unpack<IpcRequest | IpcNotice>(raw);
      if (coord.length) for (const m of coord) hub.handle(w.id, m);
      else if (tag === WORKER_TAG && (raw as FailedMessage).t === 'failed') {
        // Every worker fails the same way (the port is taken): the instance says it once, like one process.
        if (!announced && !failureSaid) process.stderr.write((raw as FailedMessage).line);
        failureSaid = true;
      } else if (tag === WORKER_TAG && (raw as ReadyMessage).t === 'ready') {
        const r = raw as ReadyMessage;
        ready.set(r.index, r);
        if (!announced && ready.size === n) {
          announced = true;
          // The instance's one start line (each worker's own is at debug level).
          const admin = [...ready.values()].find((x) => x.admin)?.admin;
          log.info(
            { listen: r.address, workers: n, balance: reusePort ? 'reuseport' : 'cluster', admin, backends: r.backends, pids: [...byIndex.values()].map((x) => x.process.pid) },
            `lacquer listening on ${r.address} with ${n} workers (${reusePort ? 'SO_REUSEPORT' : 'cluster round-robin'}), backends ${r.backends.join(', ')}${admin ? `; admin plane and dashboard on ${admin}/` : ''}`,
          );
        } else if (announced) log.info({ type: 'worker', worker: r.index, pid: w.process.pid }, `worker ${r.index} (pid ${w.process.pid}) serving`);
      }
    });
  };

  cluster.on('exit', (w, code, signal) => {
    const index = indexOf.get(w.id);
    indexOf.delete(w.id);
    outboxes.delete(w.id);
    hub.workerGone(w.id);
    if (index === undefined || stopping) return;
    if (!announced) {
      // A worker that could not start (the port is taken, a config it cannot load): the instance cannot
      // start either; stop the others and exit 1, as a single process would, instead of a crash loop. Its
      // reason is the one line it sent (FailedMessage); a worker that died without one is logged here.
      if (!failureSaid) log.error({ type: 'worker', worker: index, pid: w.process.pid, code, signal }, `worker ${index} (pid ${w.process.pid}) exited (${signal ?? `code ${code}`}) before the instance was serving; stopping`);
      failStart();
      return;
    }
    // A crashed worker: the others keep serving; it is replaced (not faster than RESPAWN_MIN_MS).
    const wait = Math.max(0, (lastFork.get(index) ?? 0) + RESPAWN_MIN_MS - Date.now());
    log.error({ type: 'worker', worker: index, pid: w.process.pid, code, signal }, `worker ${index} (pid ${w.process.pid}) exited (${signal ?? `code ${code}`}); replacing it${wait ? ` in ${wait} ms` : ''}`);
    setTimeout(() => {
      if (!stopping) fork(index);
    }, wait);
  });

  for (let i = 0; i < n; i++) fork(i);

  let exitCode = 0;
  let failStart = (): void => undefined;
  return new Promise((resolve) => {
    failStart = () => {
      exitCode = 1;
      stop('startup failure');
    };
    const stop = (signal: NodeJS.Signals | 'startup failure') => {
      if (stopping) return;
      stopping = true;
      const failed = signal === 'startup failure';
      // A start that failed has served nothing, so there is nothing to drain: the others stop at once and
      // silently, leaving the failure's one line as all the operator reads (as with a single process).
      if (!failed) log.info({ signal, workers: n }, `${signal}: draining ${n} workers (up to ${config.proxy.drain_timeout}ms)`);
      // Each worker drains on SIGTERM (serve.ts); one that hangs past the drain is killed.
      for (const w of Object.values(cluster.workers ?? {})) w?.process.kill(failed ? 'SIGKILL' : 'SIGTERM');
      const kill = setTimeout(() => {
        for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGKILL');
      }, config.proxy.drain_timeout + 5000);
      kill.unref();
      const check = () => {
        if (Object.keys(cluster.workers ?? {}).length > 0) return void setTimeout(check, 25);
        clearTimeout(kill);
        if (!failed) log.info('stopped');
        resolve(exitCode);
      };
      check();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    // The admin worker reloads and relays the reload to the others (workers/worker.ts).
    process.on('SIGHUP', () => byIndex.get(0)?.process.kill('SIGHUP'));
  });
}

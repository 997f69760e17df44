// The workers coordinator (issue 12): the workers of one instance act as one cache through their primary
// process (workers/primary.ts), over the cluster IPC channel. The same interface as redis.ts (types.ts):
//
//   locks      held by the primary: one origin request per object across workers (cross-worker
//              coalescing); a lock whose worker died is released as `expired` at once, not after its TTL;
//   broadcast  sent to the primary, which applies it to its hand-off store, relays it to every other worker
//              and answers once each has applied it (or died, or 2 s passed): `publish` resolving means the
//              instance is consistent, which the admin API waits for (`settled`) before it answers;
//   store      a hand-off store in the primary: what a worker stored, kept briefly so the workers that waited
//              on its lock find it (`cache.memory` split: README "Workers"). Not a second cache. A body
//              larger than EAGER_MAX_BYTES stays with the worker that fetched it: the primary keeps only
//              the entry (key, Vary, tags, holder) and pulls the body from the holder when another worker
//              looks it up. Measured (BENCHMARKS.md "Workers: the miss path"): copying every 100 KiB body
//              to the primary on every miss cost more than the miss itself, and the other workers asked
//              for few of them.
//
// Like every coordinator, it never throws into a request: a primary that does not answer within
// REQUEST_TIMEOUT_MS counts as "nothing shared" (a miss, `unavailable`).
import { randomUUID } from 'node:crypto';
import { exactBody } from '../cache/object.ts';
import type { CoordMessage, CoordStatus, Coordinator, FetchOutcome, LockResult, SharedObject, UnlockWait } from './types.ts';

/** The channel to the primary: `process` in a cluster worker (tests may pass a fake). */
export type IpcChannel = {
  send(message: unknown): unknown;
  on(event: 'message', listener: (message: unknown) => void): unknown;
  off(event: 'message', listener: (message: unknown) => void): unknown;
};

/** Worker → primary requests; every one carries `rid` and is answered by `{ t: 'reply', rid, value }`. */
export type IpcRequest =
  | { t: 'lookup'; rid: number; primary: string }
  /** A lookup that, when the store has nothing for the URI, also tries the lock (one round trip for a plain miss). */
  | { t: 'miss'; rid: number; primary: string; key: string; ttlMs: number }
  | { t: 'lock'; rid: number; key: string; ttlMs: number }
  | { t: 'wait'; rid: number; key: string; ms: number }
  | { t: 'publish'; rid: number; message: CoordMessage }
  /** The other workers' collected data (metrics for the admin worker's /metrics, recent failures for /api/failures). */
  | { t: 'gather'; rid: number; what: string };
/** Worker → primary, no answer. */
export type IpcNotice =
  /** `lazy`: the body stayed with the sender (sent empty), which answers a `pull` for it. */
  | { t: 'put'; object: SharedObject; ttlMs: number; lazy?: boolean }
  /** The answer to a `pull`: the sender's current copy of the key, or undefined when it has none. */
  | { t: 'pulled'; pid: number; object: SharedObject | undefined }
  | { t: 'release'; key: string; outcome: FetchOutcome }
  | { t: 'ack'; aid: number }
  | { t: 'collected'; cid: number; data: unknown };
/** Primary → worker. */
export type IpcDown =
  | { t: 'reply'; rid: number; value: unknown }
  | { t: 'deliver'; aid: number; message: CoordMessage }
  | { t: 'collect'; cid: number; what: string }
  /** Another worker looks up an object whose body this worker kept (a lazy put): send it back as `pulled`. */
  | { t: 'pull'; pid: number; key: string };

/** Tag of every coordination message, so they never mix with other IPC traffic. */
export const IPC_TAG = 'lacquer:coord';

/** What crosses the channel: one message, or every message of one event-loop turn (`batch`, in order). */
export type IpcEnvelope<M> = { tag: typeof IPC_TAG; m: M } | { tag: typeof IPC_TAG; batch: M[] };

/** The messages of an envelope received from the channel, or none when it is not a coordination message. */
export function unpack<M>(raw: unknown): readonly M[] {
  if (!raw || typeof raw !== 'object' || (raw as { tag?: unknown }).tag !== IPC_TAG) return [];
  const e = raw as IpcEnvelope<M>;
  return 'batch' in e ? e.batch : [e.m];
}

/**
 * Sends messages at the end of the event-loop turn, all of that turn's in one envelope. Each IPC write is
 * a syscall that wakes the other process: measured (BENCHMARKS.md "Workers: the miss path"), one write per
 * message made the pipe writes the largest cost of a miss across workers; under load a turn carries many
 * requests' messages. Order is kept (a put lands before its lock's release). `failed` gets each message of
 * an envelope that could not be sent (a closed channel; a value the serializer refuses: each is then
 * tried alone, so one bad message does not take its neighbours with it).
 */
export function outbox<M>(write: (envelope: IpcEnvelope<M>) => void, failed: (m: M) => void): (m: M) => void {
  let queue: M[] = [];
  const flush = () => {
    const batch = queue;
    queue = [];
    try {
      write(batch.length === 1 ? { tag: IPC_TAG, m: batch[0]! } : { tag: IPC_TAG, batch });
    } catch {
      for (const m of batch) {
        try {
          if (batch.length > 1) write({ tag: IPC_TAG, m });
          else failed(m);
        } catch {
          failed(m);
        }
      }
    }
  };
  return (m) => {
    if (queue.push(m) === 1) setImmediate(flush);
  };
}

/**
 * Bodies up to this size go to the primary with the put (cheap to copy, and served from there without a
 * hop to the holder); larger ones stay with the worker that fetched them until another worker asks.
 */
export const EAGER_MAX_BYTES = 8 * 1024;
const EMPTY = Buffer.alloc(0);

/** Longest a request waits on the primary for an answer that should come at once (lookup, lock). */
const REQUEST_TIMEOUT_MS = 1000;
/** Longest a publish waits for every worker to have applied it. */
export const PUBLISH_TIMEOUT_MS = 2000;
/** Longest the primary waits for the workers' answers to a gather. */
export const GATHER_TIMEOUT_MS = 1500;

type LockAnswer = 'acquired' | 'held' | 'unavailable';

/** The requester's variant among the URI's, in its own copy of the bytes. */
function pick(variants: readonly SharedObject[], keyFor: (varyFields: readonly string[]) => string): SharedObject | undefined {
  for (const v of variants) {
    // Its own copy: the deserialized body is a view into the whole IPC message's buffer (with whatever
    // else that read carried), which a cached object must not keep alive.
    if (v.key === keyFor(v.varyFields)) return { ...v, body: exactBody([v.body], v.body.length) };
  }
  return undefined;
}

export class IpcCoordinator implements Coordinator {
  readonly id: string;
  readonly shared = true;
  readonly maxObjectBytes: number;
  readonly #ch: IpcChannel;
  #rid = 0;
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; timer: NodeJS.Timeout; fallback: unknown }>();
  readonly #handlers = new Set<(m: CoordMessage) => void>();
  readonly #errors: Record<string, number> = {};
  /** Publishes not yet confirmed by the primary (settled() waits for them). */
  readonly #unsettled = new Set<Promise<void>>();
  readonly #onMessage = (raw: unknown): void => {
    for (const m of unpack<IpcDown>(raw)) this.#receive(m);
  };
  readonly #out: (m: IpcRequest | IpcNotice) => void;
  /**
   * This worker's own copy of a variant key (set by the sharing store: coord/store.ts), for a lazy put's
   * `pull`. Without one, every body goes to the primary with its put.
   */
  source: ((key: string) => SharedObject | undefined) | undefined;

  constructor(ch: IpcChannel, o: { maxObjectBytes: number; id?: string }) {
    this.#ch = ch;
    this.#out = outbox<IpcRequest | IpcNotice>((e) => ch.send(e), (m) => this.#failed(m));
    this.maxObjectBytes = o.maxObjectBytes;
    this.id = o.id ?? `worker-${process.pid}-${randomUUID().slice(0, 8)}`;
    ch.on('message', this.#onMessage);
  }

  #receive(m: IpcDown): void {
    if (m.t === 'reply') {
      const p = this.#pending.get(m.rid);
      if (!p) return; // answered after its timeout: ignored
      this.#pending.delete(m.rid);
      clearTimeout(p.timer);
      p.resolve(m.value);
      return;
    }
    if (m.t === 'pull') {
      let object: SharedObject | undefined;
      try {
        object = this.source?.(m.key);
      } catch {
        object = undefined;
      }
      this.#send({ t: 'pulled', pid: m.pid, object });
      return;
    }
    if (m.t === 'collect') {
      const c = this.collectors.get(m.what);
      void (c ? c() : Promise.resolve(undefined)).then(
        (data) => this.#send({ t: 'collected', cid: m.cid, data }),
        () => this.#send({ t: 'collected', cid: m.cid, data: undefined }),
      );
      return;
    }
    for (const h of this.#handlers) {
      try {
        h(m.message);
      } catch {
        // one handler's failure must not keep the others (or the ack) from running
      }
    }
    this.#send({ t: 'ack', aid: m.aid });
  }

  #send(m: IpcRequest | IpcNotice): void {
    this.#out(m);
  }

  /** A message that could not be sent (the primary is gone): its request answers its fallback at once. */
  #failed(m: IpcRequest | IpcNotice): void {
    this.#count(m.t);
    // Whatever cannot cross (a value the serializer refuses) is answered as "none": the puller fetches.
    if (m.t === 'pulled' && m.object !== undefined) return this.#send({ t: 'pulled', pid: m.pid, object: undefined });
    if (!('rid' in m)) return;
    const p = this.#pending.get(m.rid);
    if (!p) return;
    this.#pending.delete(m.rid);
    clearTimeout(p.timer);
    p.resolve(p.fallback);
  }

  #count(op: string): void {
    this.#errors[op] = (this.#errors[op] ?? 0) + 1;
  }

  /** Sends a request; resolves with the answer, or with `fallback` on a timeout or a closed channel. */
  #request<T>(build: (rid: number) => IpcRequest, fallback: T, timeoutMs = REQUEST_TIMEOUT_MS): Promise<T> {
    const rid = ++this.#rid;
    return new Promise<T>((resolve) => {
      const timer = setTimeout(() => {
        this.#pending.delete(rid);
        this.#count('timeout');
        resolve(fallback);
      }, timeoutMs);
      timer.unref();
      this.#pending.set(rid, { resolve: resolve as (v: unknown) => void, timer, fallback });
      this.#send(build(rid));
    });
  }

  async lookup(primary: string, keyFor: (varyFields: readonly string[]) => string): Promise<SharedObject | undefined> {
    return pick(await this.#request<SharedObject[]>((rid) => ({ t: 'lookup', rid, primary }), []), keyFor);
  }

  async lookupOrLock(primary: string, keyFor: (varyFields: readonly string[]) => string, key: string, ttlMs: number): Promise<{ found: SharedObject | undefined; lock: LockResult | undefined }> {
    const r = await this.#request<{ found: SharedObject[]; lock?: LockAnswer }>((rid) => ({ t: 'miss', rid, primary, key, ttlMs }), { found: [], lock: 'unavailable' });
    return { found: pick(r.found, keyFor), lock: r.lock && this.#lockResult(key, r.lock) };
  }

  put(object: SharedObject, ttlMs: number): void {
    if (this.source && object.body.length > EAGER_MAX_BYTES) this.#send({ t: 'put', object: { ...object, body: EMPTY }, ttlMs, lazy: true });
    else this.#send({ t: 'put', object, ttlMs });
  }

  async lock(key: string, ttlMs: number): Promise<LockResult> {
    return this.#lockResult(key, await this.#request<LockAnswer>((rid) => ({ t: 'lock', rid, key, ttlMs }), 'unavailable'));
  }

  #lockResult(key: string, r: LockAnswer): LockResult {
    if (r !== 'acquired') return { kind: r };
    let released = false;
    return {
      kind: 'acquired',
      lock: {
        key,
        release: (outcome) => {
          if (released) return;
          released = true;
          this.#send({ t: 'release', key, outcome });
        },
      },
    };
  }

  waitUnlocked(key: string, ms: number): Promise<UnlockWait> {
    // The primary answers on release or expiry; our own timer answers `timeout` (the primary forgets the wait).
    return this.#request<UnlockWait>((rid) => ({ t: 'wait', rid, key, ms }), 'timeout', ms);
  }

  publish(message: CoordMessage): Promise<void> {
    const p = this.#request<unknown>((rid) => ({ t: 'publish', rid, message }), undefined, PUBLISH_TIMEOUT_MS + 500).then(() => undefined);
    this.#unsettled.add(p);
    void p.finally(() => this.#unsettled.delete(p));
    return p;
  }

  /** What this worker answers when another one gathers, by kind (`metrics`: its registry as JSON). */
  readonly collectors = new Map<string, () => Promise<unknown>>();

  /** The other workers' collected data of one kind (each worker's collector), within GATHER_TIMEOUT_MS. */
  gather(what: string): Promise<unknown[]> {
    return this.#request<unknown[]>((rid) => ({ t: 'gather', rid, what }), [], GATHER_TIMEOUT_MS + 500);
  }

  /** Resolves once every message published so far has been applied by every worker (or timed out). */
  async settled(): Promise<void> {
    while (this.#unsettled.size > 0) await Promise.all([...this.#unsettled]);
  }

  subscribe(handler: (message: CoordMessage) => void): () => void {
    this.#handlers.add(handler);
    return () => this.#handlers.delete(handler);
  }

  status(): CoordStatus {
    return { state: 'up', errors: { ...this.#errors } };
  }

  close(): Promise<void> {
    this.#ch.off('message', this.#onMessage);
    for (const [, p] of this.#pending) {
      clearTimeout(p.timer);
      p.resolve(p.fallback);
    }
    this.#pending.clear();
    this.#handlers.clear();
    return Promise.resolve();
  }
}

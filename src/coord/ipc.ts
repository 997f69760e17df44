// The workers coordinator (issue 12): the workers of one instance act as one cache through their primary
// process (workers/primary.ts), over the cluster IPC channel. The same interface as redis.ts (types.ts):
//
//   locks      held by the primary: one origin request per object across workers (cross-worker
//              coalescing); a lock whose worker died is released as `expired` at once, not after its TTL;
//   broadcast  sent to the primary, which applies it to its hand-off store, relays it to every other worker
//              and answers once each has applied it (or died, or 2 s passed): `publish` resolving means the
//              instance is consistent, which the admin API waits for (`settled`) before it answers;
//   store      a hand-off store in the primary: what a worker stored, kept briefly so the workers that waited
//              on its lock find it (`cache.memory` split: README "Workers"). Not a second cache.
//
// Like every coordinator, it never throws into a request: a primary that does not answer within
// REQUEST_TIMEOUT_MS counts as "nothing shared" (a miss, `unavailable`).
import { randomUUID } from 'node:crypto';
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
  | { t: 'lock'; rid: number; key: string; ttlMs: number }
  | { t: 'wait'; rid: number; key: string; ms: number }
  | { t: 'publish'; rid: number; message: CoordMessage }
  /** The other workers' collected data (metrics for the admin worker's /metrics, recent failures for /api/failures). */
  | { t: 'gather'; rid: number; what: string };
/** Worker → primary, no answer. */
export type IpcNotice =
  | { t: 'put'; object: SharedObject; ttlMs: number }
  | { t: 'release'; key: string; outcome: FetchOutcome }
  | { t: 'ack'; aid: number }
  | { t: 'collected'; cid: number; data: unknown };
/** Primary → worker. */
export type IpcDown = { t: 'reply'; rid: number; value: unknown } | { t: 'deliver'; aid: number; message: CoordMessage } | { t: 'collect'; cid: number; what: string };

/** Tag of every coordination message, so they never mix with other IPC traffic. */
export const IPC_TAG = 'lacquer:coord';

/** Longest a request waits on the primary for an answer that should come at once (lookup, lock). */
const REQUEST_TIMEOUT_MS = 1000;
/** Longest a publish waits for every worker to have applied it. */
export const PUBLISH_TIMEOUT_MS = 2000;
/** Longest the primary waits for the workers' answers to a gather. */
export const GATHER_TIMEOUT_MS = 1500;

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
  readonly #onMessage = (raw: unknown): void => this.#receive(raw);

  constructor(ch: IpcChannel, o: { maxObjectBytes: number; id?: string }) {
    this.#ch = ch;
    this.maxObjectBytes = o.maxObjectBytes;
    this.id = o.id ?? `worker-${process.pid}-${randomUUID().slice(0, 8)}`;
    ch.on('message', this.#onMessage);
  }

  #receive(raw: unknown): void {
    if (!raw || typeof raw !== 'object' || (raw as { tag?: unknown }).tag !== IPC_TAG) return;
    const m = (raw as { m: IpcDown }).m;
    if (m.t === 'reply') {
      const p = this.#pending.get(m.rid);
      if (!p) return; // answered after its timeout: ignored
      this.#pending.delete(m.rid);
      clearTimeout(p.timer);
      p.resolve(m.value);
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

  #send(m: IpcRequest | IpcNotice): boolean {
    try {
      this.#ch.send({ tag: IPC_TAG, m });
      return true;
    } catch {
      this.#count(m.t);
      return false; // the channel is closed (the primary is gone): nothing shared
    }
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
      const req = build(rid);
      if (!this.#send(req)) {
        clearTimeout(timer);
        this.#pending.delete(rid);
        resolve(fallback);
      }
    });
  }

  async lookup(primary: string, keyFor: (varyFields: readonly string[]) => string): Promise<SharedObject | undefined> {
    const variants = await this.#request<SharedObject[]>((rid) => ({ t: 'lookup', rid, primary }), []);
    for (const v of variants) {
      if (v.key === keyFor(v.varyFields)) return { ...v, body: Buffer.isBuffer(v.body) ? v.body : Buffer.from(v.body as Uint8Array) };
    }
    return undefined;
  }

  put(object: SharedObject, ttlMs: number): void {
    this.#send({ t: 'put', object, ttlMs });
  }

  async lock(key: string, ttlMs: number): Promise<LockResult> {
    const r = await this.#request<'acquired' | 'held' | 'unavailable'>((rid) => ({ t: 'lock', rid, key, ttlMs }), 'unavailable');
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

// The coordination interface: what several Lacquer processes share so that they act as one cache —
// locks for coalescing, a broadcast for invalidation and control, and a shared object store.
//
// Implementations:
//   local.ts  one process, nothing shared (what runs without `fleet`): the pipeline skips every call
//             that would only add latency (`shared` is false);
//   redis.ts  a fleet of instances on Redis (issue 13);
//   (issue 12: workers of one machine over IPC — written against this same interface).
//
// Kept narrow and transport-agnostic on purpose: objects cross it as bytes + JSON-safe metadata, messages
// are small JSON values, keys are strings. Nothing here may throw into a request: a coordinator that
// cannot reach its peers answers "nothing shared" (a miss, `unavailable`) within its own time bound, so
// coordination is never a new way for a request to fail.
import type { BanSpec, PurgeMode } from '../cache/invalidate.ts';

/** A stored response in transport form (codec.ts converts a CachedObject to and from it). */
export type SharedObject = {
  /** The variant key: primary key + the Vary values of the request it answered. */
  key: string;
  /** The URI's key, shared by all its variants (purges address it). */
  primary: string;
  /** The Vary field names of this response (lower case); empty when it has no Vary. */
  varyFields: readonly string[];
  /** Surrogate keys (purge by tag). */
  tags: readonly string[];
  /** Everything else about the object, JSON-safe. Opaque to the transport. */
  meta: Record<string, unknown>;
  body: Buffer;
  /** Epoch ms of a soft purge or soft ban applied to the shared copy after it was written. */
  invalidatedAt?: number;
};

/** An invalidation as it travels: applied to the shared store by the sender, to each local cache by its receiver. */
export type Invalidation =
  | { op: 'purge'; primary: string; mode: PurgeMode }
  | { op: 'ban'; spec: BanSpec; mode: PurgeMode; at: number }
  | { op: 'tags'; tags: readonly string[]; mode: PurgeMode }
  | { op: 'all'; mode: PurgeMode };

export type CoordMessage =
  /** Apply this invalidation to the local cache. */
  | { kind: 'invalidate'; inv: Invalidation }
  /** Operator controls (maintenance, overrides, reload) for implementations that carry them. */
  | { kind: 'control'; name: string; data?: unknown }
  /**
   * Invalidations were missed and cannot be replayed (a long disconnect, a trimmed log): the local cache
   * may hold purged content and must be dropped.
   */
  | { kind: 'reset'; reason: string };

/** How a lock holder's fetch ended, told to the waiters when the lock is released. */
export type FetchOutcome = 'stored' | 'not-stored';

export type Lock = {
  readonly key: string;
  /** Releases the lock (if still ours) and wakes the waiters; after any pending `put` of the key has landed. */
  release(outcome: FetchOutcome): void;
};

export type LockResult =
  /** This process fetches; everyone else waits. */
  | { kind: 'acquired'; lock: Lock }
  /** Another process is fetching this key: wait with `waitUnlocked`. */
  | { kind: 'held' }
  /** Coordination is down or too slow: fetch without a shared lock (local coalescing still applies). */
  | { kind: 'unavailable' };

export type UnlockWait =
  /** The holder stored the object: look it up. */
  | 'stored'
  /** The holder's answer may not be shared: fetch on your own, without the lock. */
  | 'not-stored'
  /** The lock expired (its holder died or hung) or coordination failed: try to take it over. */
  | 'expired'
  /** `ms` passed. */
  | 'timeout';

export type CoordState = 'local' | 'up' | 'down';

export type CoordStatus = {
  state: CoordState;
  /** Human summary of the last problem, if any. */
  detail?: string;
  /** Errors by operation since start (`lacquer_fleet_errors_total{op}`). */
  errors: Readonly<Record<string, number>>;
};

export interface Coordinator {
  /** This process's id, unique in the fleet (messages from it are not delivered back to it). */
  readonly id: string;
  /**
   * False when nothing is shared (single process): the pipeline then skips lookups, locks and broadcasts
   * entirely, so the request path costs exactly what it costs without coordination.
   */
  readonly shared: boolean;
  /** Objects larger than this stay local (`put` ignores them). */
  readonly maxObjectBytes: number;

  /**
   * Shared store lookup for a URI. `keyFor` turns the URI's Vary field names into the requester's variant
   * key. Resolves undefined on a miss, a timeout or an error — never rejects.
   */
  lookup(primary: string, keyFor: (varyFields: readonly string[]) => string): Promise<SharedObject | undefined>;
  /**
   * Optional (issue 12): `lookup`, and when the store has nothing at all for the URI, `lock(key, ttlMs)` in
   * the same round trip (`lock` undefined when something was found: the caller locks if it needs to).
   */
  lookupOrLock?(primary: string, keyFor: (varyFields: readonly string[]) => string, key: string, ttlMs: number): Promise<{ found: SharedObject | undefined; lock: LockResult | undefined }>;
  /** Writes an object to the shared store for `ttlMs`, off the request path (fire and forget). */
  put(object: SharedObject, ttlMs: number): void;

  /**
   * Tries to take the fetch lock for a variant key for `ttlMs` (a little above the origin's first-byte
   * timeout, so a dead holder's lock expires). Never rejects.
   */
  lock(key: string, ttlMs: number): Promise<LockResult>;
  /** Waits until the key's lock is released or expires, at most `ms`. Never rejects. */
  waitUnlocked(key: string, ms: number): Promise<UnlockWait>;

  /**
   * Sends a message to every other process. An invalidation is also applied to the shared store. Resolves
   * once sent (or once sending failed: errors are counted, never thrown).
   */
  publish(message: CoordMessage): Promise<void>;
  /** Receives the messages of other processes (and `reset`); returns the unsubscribe function. */
  subscribe(handler: (message: CoordMessage) => void): () => void;

  status(): CoordStatus;
  close(): Promise<void>;
  /**
   * Optional (issue 12): resolves once every message published so far has reached every process. The
   * admin API waits for it before answering a change, so the answer means the whole instance applied it.
   */
  settled?(): Promise<void>;
}

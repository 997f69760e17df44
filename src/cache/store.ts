// The object store: an in-memory LRU bounded by bytes (lru-cache), with Vary variants under a primary key.
import { LRUCache } from 'lru-cache';
import { parseVary, variantKey } from './key.ts';
import { retentionMs, type CachedObject } from './object.ts';
import type { Headers } from './storable.ts';

export type LookupResult =
  | { kind: 'found'; object: CachedObject }
  /** Nothing stored for this URI. */
  | { kind: 'uri-miss' }
  /** Variants exist for this URI but none matches the request's Vary fields. */
  | { kind: 'vary-miss' };

export type StoreStats = { bytes: number; maxBytes: number; objects: number; evictions: number };

export interface Store {
  lookup(primary: string, reqHeaders: Headers): LookupResult;
  /**
   * The key of the variant this request would get (the primary key while the URI's Vary is unknown): the
   * coalescing key, so requests for different variants do not wait behind each other's fetch.
   */
  variantKey(primary: string, reqHeaders: Headers): string;
  /**
   * Stores an object; false when it does not fit, or when `epoch` (from `epoch()` when its fetch began)
   * shows the URI was invalidated while it was being fetched (RFC 9111 §4.4: a POST's invalidation must not
   * be undone by a GET that was in flight and brings the old representation).
   */
  put(object: CachedObject, now: number, epoch?: number): boolean;
  /** A counter that moves on every `removeAll`; read when a fetch begins and handed back to `put`. */
  epoch(): number;
  /** Removes every variant of a URI (an unsafe method, a purge); returns how many objects were removed. */
  removeAll(primary: string): number;
  /** Removes one object by its full key. */
  delete(key: string): boolean;
  /** Reads one object by its full key without touching its recency. */
  peek(key: string): CachedObject | undefined;
  /** Removes everything; returns how many objects were removed. */
  clear(): number;
  /** Every stored object, most recently used first (for purges, the ban lurker and snapshots). */
  entries(): IterableIterator<[string, CachedObject]>;
  stats(): StoreStats;
}

export class MemoryStore implements Store {
  readonly #lru: LRUCache<string, CachedObject>;
  /** primary key → full keys of its variants, so a purge or an unsafe method reaches all of them. */
  readonly #variants = new Map<string, Set<string>>();
  /** primary key → the Vary field names of its newest response. */
  readonly #varySpec = new Map<string, readonly string[]>();
  #evictions = 0;
  readonly #maxBytes: number;
  #epoch = 0;
  /** primary key → the epoch of its last removeAll; bounded: it only matters while fetches are in flight. */
  readonly #removedAt = new LRUCache<string, number>({ max: 10_000 });

  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes;
    this.#lru = new LRUCache<string, CachedObject>({
      maxSize: maxBytes,
      sizeCalculation: (o) => o.size,
      ttlAutopurge: false,
      dispose: (o, key, reason) => {
        if (reason === 'evict') this.#evictions++;
        if (reason === 'set') return; // replaced by a newer copy under the same key
        const set = this.#variants.get(o.primary);
        if (set) {
          set.delete(key);
          if (set.size === 0) {
            this.#variants.delete(o.primary);
            this.#varySpec.delete(o.primary);
          }
        }
      },
    });
  }

  lookup(primary: string, reqHeaders: Headers): LookupResult {
    const fields = this.#varySpec.get(primary);
    if (fields === undefined) return { kind: 'uri-miss' };
    const object = this.#lru.get(variantKey(primary, fields, reqHeaders));
    if (object) return { kind: 'found', object };
    return this.#variants.has(primary) ? { kind: 'vary-miss' } : { kind: 'uri-miss' };
  }

  variantKey(primary: string, reqHeaders: Headers): string {
    return variantKey(primary, this.#varySpec.get(primary) ?? [], reqHeaders);
  }

  epoch(): number {
    return this.#epoch;
  }

  put(object: CachedObject, now: number, epoch?: number): boolean {
    if (object.size > this.#maxBytes) return false;
    if (epoch !== undefined && (this.#removedAt.get(object.primary) ?? -1) > epoch) return false;
    const fields = object.varyFields;
    const prev = this.#varySpec.get(object.primary);
    // A changed Vary makes the old variants unreachable: drop them rather than let them linger.
    if (prev && prev.join() !== fields.join()) this.#drop(object.primary);
    this.#varySpec.set(object.primary, fields);
    let set = this.#variants.get(object.primary);
    if (!set) this.#variants.set(object.primary, (set = new Set()));
    set.add(object.key);
    this.#lru.set(object.key, object, { ttl: retentionMs(object, now) });
    return this.#lru.has(object.key);
  }

  removeAll(primary: string): number {
    this.#removedAt.set(primary, ++this.#epoch);
    return this.#drop(primary);
  }

  #drop(primary: string): number {
    const set = this.#variants.get(primary);
    if (!set) return 0;
    let n = 0;
    for (const key of [...set]) if (this.#lru.delete(key)) n++;
    this.#variants.delete(primary);
    this.#varySpec.delete(primary);
    return n;
  }

  delete(key: string): boolean {
    return this.#lru.delete(key);
  }

  peek(key: string): CachedObject | undefined {
    return this.#lru.peek(key);
  }

  clear(): number {
    const n = this.#lru.size;
    this.#lru.clear();
    this.#variants.clear();
    this.#varySpec.clear();
    return n;
  }

  entries(): IterableIterator<[string, CachedObject]> {
    return this.#lru.entries() as IterableIterator<[string, CachedObject]>;
  }

  stats(): StoreStats {
    return { bytes: this.#lru.calculatedSize, maxBytes: this.#maxBytes, objects: this.#lru.size, evictions: this.#evictions };
  }
}

export { parseVary };

// The local store of a process that shares objects: every object stored locally is also written to the
// shared store (off the request path), except those that came from it. Lookups stay synchronous and
// local: a hit never waits on the coordinator.
import { retentionMs, type CachedObject } from '../cache/object.ts';
import type { Headers } from '../cache/storable.ts';
import type { LookupResult, Store, StoreStats } from '../cache/store.ts';
import { encodeObject } from './codec.ts';
import { IpcCoordinator } from './ipc.ts';
import type { Coordinator } from './types.ts';

export class SharingStore implements Store {
  readonly inner: Store;
  readonly #coord: Coordinator;
  /** Objects adopted from the shared store: already there, not written back. */
  readonly #adopted = new WeakSet<CachedObject>();

  constructor(inner: Store, coord: Coordinator) {
    this.inner = inner;
    this.#coord = coord;
    // Workers: a large body stays here and another worker's lookup pulls it (coord/ipc.ts).
    if (coord instanceof IpcCoordinator) {
      coord.source = (key) => {
        const o = inner.peek(key);
        return o && encodeObject(o);
      };
    }
  }

  lookup(primary: string, reqHeaders: Headers): LookupResult {
    return this.inner.lookup(primary, reqHeaders);
  }

  variantKey(primary: string, reqHeaders: Headers): string {
    return this.inner.variantKey(primary, reqHeaders);
  }

  put(object: CachedObject, now: number, epoch?: number): boolean {
    const ok = this.inner.put(object, now, epoch);
    // Written to the shared store only what this process stored itself (an epoch-rejected copy is
    // outdated: RFC 9111 §4.4), and only if small enough (fleet.store.max_object_size).
    if (ok && !this.#adopted.has(object) && object.body.length <= this.#coord.maxObjectBytes) this.#coord.put(encodeObject(object), retentionMs(object, now));
    return ok;
  }

  /** Stores an object found in the shared store, locally only. */
  adopt(object: CachedObject, now: number, epoch?: number): boolean {
    this.#adopted.add(object);
    return this.inner.put(object, now, epoch);
  }

  epoch(): number {
    return this.inner.epoch();
  }

  removeAll(primary: string): number {
    return this.inner.removeAll(primary);
  }

  delete(key: string): boolean {
    return this.inner.delete(key);
  }

  peek(key: string): CachedObject | undefined {
    return this.inner.peek(key);
  }

  clear(): number {
    return this.inner.clear();
  }

  entries(): IterableIterator<[string, CachedObject]> {
    return this.inner.entries();
  }

  stats(): StoreStats {
    return this.inner.stats();
  }
}

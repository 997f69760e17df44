// Every backend pool of a context, for the metrics, the dashboard and the admin API, and the pool a backend
// belongs to (attempts carry only the backend name; names are unique across pools).
import type { ProxyContext } from '../pipeline/context.ts';
import type { BackendPool } from '../upstream/pool.ts';
import type { PoolSnapshot } from '../upstream/state.ts';

export function poolsOf(ctx: ProxyContext): BackendPool[] {
  return [...ctx.pools.values()];
}

export function snapshots(ctx: ProxyContext): PoolSnapshot[] {
  return poolsOf(ctx).map((p) => p.snapshot());
}

/** Maps a backend name to its pool's name; rebuilt when the context is replaced (a reload) or a name is unknown. */
export class PoolIndex {
  readonly #ctx: () => ProxyContext;
  #for: ProxyContext | undefined;
  #byBackend = new Map<string, string>();

  constructor(ctx: () => ProxyContext) {
    this.#ctx = ctx;
  }

  poolOf(backend: string): string {
    const ctx = this.#ctx();
    let p = ctx === this.#for ? this.#byBackend.get(backend) : undefined;
    if (p !== undefined) return p;
    this.#for = ctx;
    this.#byBackend = new Map();
    for (const pool of poolsOf(ctx)) for (const b of pool.backends) this.#byBackend.set(b.name, pool.name);
    p = this.#byBackend.get(backend) ?? ctx.pool.name;
    this.#byBackend.set(backend, p);
    return p;
  }
}

// Route: host/path → the pool that serves the request, with the route's own cache switch, TTL and stale
// window overrides, timeouts and retry policy. Routes are tried in configured order, first match wins; a request
// no route matches goes to the `default` pool (the `backends:` list). No pool at all is a configuration
// error the client sees as `proxy_configuration_error` (FAILURES.md).
import type { StoragePolicy } from '../cache/storable.ts';
import type { Config, RetryPolicy, RouteConfig } from '../config/schema.ts';
import type { Exchange } from '../server/exchange.ts';
import type { BackendPool } from '../upstream/pool.ts';
import type { ProxyContext } from './context.ts';

export type Route = {
  /** `host+path_prefix` for logs; `default` for the fallback route. */
  name: string;
  pool: BackendPool;
  cache: boolean;
  /** Storage policy when the route overrides `ttl` or a stale window; otherwise the context's. */
  policy: StoragePolicy | undefined;
  /** Per-request overrides of the first_byte / between_bytes timeouts, ms. */
  timeouts: { first_byte?: number; between_bytes?: number } | undefined;
  retries: RetryPolicy;
};

type Compiled = Route & { host: string | undefined; wildcard: boolean; prefix: string };

export class RouteTable {
  readonly #routes: Compiled[];
  readonly #fallback: Route | undefined;

  constructor(config: Config, pools: ReadonlyMap<string, BackendPool>, basePolicy: StoragePolicy) {
    this.#routes = config.routes.map((r) => compile(r, pools, basePolicy));
    const def = pools.get('default');
    this.#fallback = def && { name: 'default', pool: def, cache: true, policy: undefined, timeouts: undefined, retries: def.settings.retries };
  }

  /** The route for a host (as sent, may carry a port) and origin-form target; undefined: nothing matches. */
  match(host: string, target: string): Route | undefined {
    if (this.#routes.length === 0) return this.#fallback; // no per-request lowercasing when there are no routes
    const h = host.toLowerCase();
    const bare = h.replace(/:\d+$/, '');
    for (const r of this.#routes) {
      if (r.host !== undefined) {
        const hostOk = r.wildcard ? bare.endsWith(r.host) && bare.length > r.host.length : h === r.host || bare === r.host;
        if (!hostOk) continue;
      }
      if (target.startsWith(r.prefix)) return r;
    }
    return this.#fallback;
  }
}

function compile(r: RouteConfig, pools: ReadonlyMap<string, BackendPool>, base: StoragePolicy): Compiled {
  const pool = pools.get(r.pool)!; // the schema checked that the pool exists
  const wildcard = r.host?.startsWith('*.') ?? false;
  const sie = r.stale_if_error ?? r.grace; // `grace`: the deprecated alias (schema.ts deprecationNotes)
  const policy =
    r.ttl !== undefined || sie !== undefined || r.stale_while_revalidate !== undefined
      ? { ...base, defaultTtlMs: r.ttl ?? base.defaultTtlMs, staleIfErrorMs: sie ?? base.staleIfErrorMs, staleWhileRevalidateMs: r.stale_while_revalidate ?? base.staleWhileRevalidateMs }
      : undefined;
  return {
    name: `${r.host ?? '*'}${r.path_prefix}`,
    pool,
    cache: r.cache,
    policy,
    timeouts: r.timeouts,
    retries: r.retries ?? pool.settings.retries,
    host: wildcard ? r.host!.slice(1).toLowerCase() : r.host?.toLowerCase(),
    wildcard,
    prefix: r.path_prefix,
  };
}

/** The route for this request; undefined when no route matches and there is no default pool. */
export function route(ctx: ProxyContext, ex: Exchange): Route | undefined {
  return ctx.routes.match(ex.host, ex.target);
}

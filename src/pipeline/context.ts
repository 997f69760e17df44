// Everything a request needs that outlives it: configuration, backends, store, in-flight fetches.
// Built once per configuration by the composition root (main.ts); nothing here is module-level state.
import { LRUCache } from 'lru-cache';
import type { Config } from '../config/schema.ts';
import { MemoryStore, type Store } from '../cache/store.ts';
import type { StoragePolicy } from '../cache/storable.ts';
import { BackendPool } from '../upstream/pool.ts';
import { Coalescer } from './coalesce.ts';
import { Invalidator } from '../cache/invalidate.ts';
import type { AccessLog } from '../observe/access-log.ts';

export type ProxyStats = {
  requests: number;
  hits: number;
  staleServed: number;
  originFetches: number;
  synthErrors: number;
  errorsByType: Record<string, number>;
};

export type ProxyContext = {
  readonly config: Config;
  readonly name: string;
  /** Our Via member, e.g. `1.1 lacquer`. */
  readonly via: string;
  readonly pool: BackendPool;
  readonly store: Store;
  readonly coalescer: Coalescer;
  /** Purges, bans and tags (applied lazily at lookup and by the ban lurker). */
  readonly invalidator: Invalidator;
  /**
   * Hit-for-miss marks (Varnish): a URI whose last answer was not storable is fetched without
   * coalescing for a while, so uncacheable pages are not serialised behind one another.
   */
  readonly passMarks: LRUCache<string, true>;
  readonly policy: StoragePolicy;
  readonly maxObjectBytes: number;
  readonly log: AccessLog;
  readonly stats: ProxyStats;
  /** Background fetches (grace refreshes) in flight, so shutdown can wait for them. */
  background: number;
};

/** How long a hit-for-miss mark lasts. */
const PASS_MARK_TTL_MS = 120_000;

export function createContext(config: Config, log: AccessLog, store?: Store, pool?: BackendPool): ProxyContext {
  const c = config.cache;
  const theStore = store ?? new MemoryStore(c.memory);
  return {
    config,
    name: config.proxy.name,
    via: `1.1 ${config.proxy.name}`,
    pool: pool ?? BackendPool.fromConfig(config),
    store: theStore,
    coalescer: new Coalescer(),
    invalidator: new Invalidator(theStore),
    passMarks: new LRUCache<string, true>({ max: 10_000, ttl: PASS_MARK_TTL_MS }),
    policy: {
      defaultTtlMs: c.default_ttl,
      heuristicFraction: c.heuristic_fraction,
      heuristicMaxMs: c.heuristic_max,
      graceMs: c.grace,
      keepMs: c.keep,
      storeSetCookie: c.store_set_cookie,
      honorClientCacheControl: c.honor_client_cache_control,
    },
    maxObjectBytes: Math.floor(c.memory * c.max_object_share),
    log,
    stats: { requests: 0, hits: 0, staleServed: 0, originFetches: 0, synthErrors: 0, errorsByType: {} },
    background: 0,
  };
}

// Everything a request needs that outlives it: configuration, backends, store, in-flight fetches.
// Built once per configuration by the composition root (main.ts); nothing here is module-level state.
import { LRUCache } from 'lru-cache';
import type { Config } from '../config/schema.ts';
import { MemoryStore, type Store } from '../cache/store.ts';
import type { StoragePolicy } from '../cache/storable.ts';
import { BackendPool } from '../upstream/pool.ts';
import { RouteTable } from './route.ts';
import { Coalescer } from './coalesce.ts';
import { Invalidator } from '../cache/invalidate.ts';
import { Maintenance } from './maintenance.ts';
import type { AccessLog } from '../observe/access-log.ts';
import type { Coordinator } from '../coord/types.ts';
import { LocalCoordinator } from '../coord/local.ts';
import { SharingStore } from '../coord/store.ts';

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
  /** The `default` pool (the `backends:` list), or the first of `pools:` when there is none. */
  readonly pool: BackendPool;
  /** Every pool by name; the admin plane reads their snapshots and sets overrides through them. */
  readonly pools: ReadonlyMap<string, BackendPool>;
  /** Host/path → pool, cache switch, timeouts and retry policy. */
  readonly routes: RouteTable;
  readonly store: Store;
  readonly coalescer: Coalescer;
  /** Locks, broadcast and shared store across processes (coord/); a LocalCoordinator when alone. */
  readonly coord: Coordinator;
  /** Purges, bans and tags (applied lazily at lookup and by the ban lurker). */
  readonly invalidator: Invalidator;
  /** Maintenance modes (config, schedule, admin overrides). */
  readonly maintenance: Maintenance;
  /**
   * Hit-for-miss marks (Varnish): a URI whose last answer was not storable is fetched without
   * coalescing for a while, so uncacheable pages are not serialised behind one another.
   */
  readonly passMarks: LRUCache<string, true>;
  readonly policy: StoragePolicy;
  readonly maxObjectBytes: number;
  readonly log: AccessLog;
  readonly stats: ProxyStats;
  /** Background fetches (stale-while-revalidate refreshes) in flight, so shutdown can wait for them. */
  background: number;
  /**
   * Epoch ms for freshness, staleness and ages (RFC 9111 §4.2): Date.now unless a test injects a clock
   * (issue 11 item 19: time-dependent behaviour tested without wall-clock sleeps).
   */
  readonly now: () => number;
};

/** How long a hit-for-miss mark lasts. */
const PASS_MARK_TTL_MS = 120_000;

/** What a configuration reload carries over from the running context: the cache and everything about it. */
export type Carry = Pick<ProxyContext, 'store' | 'coalescer' | 'invalidator' | 'passMarks' | 'stats' | 'maintenance' | 'now' | 'coord'>;

/** `coord`: the fleet's coordinator on the first context (main.ts); a reload carries it over. */
export function createContext(config: Config, log: AccessLog, carry?: Carry, clock?: () => number, coord?: Coordinator): ProxyContext {
  const c = config.cache;
  const theCoord = carry?.coord ?? coord ?? new LocalCoordinator();
  // Only a shared coordinator wraps the store: alone, lookups and stores go straight to memory.
  const theStore = carry?.store ?? (theCoord.shared ? new SharingStore(new MemoryStore(c.memory), theCoord) : new MemoryStore(c.memory));
  const pools = BackendPool.allFromConfig(config);
  if (carry) carry.maintenance.config = config.maintenance;
  const policy: StoragePolicy = {
    defaultTtlMs: c.default_ttl,
    heuristicFraction: c.heuristic_fraction,
    heuristicMaxMs: c.heuristic_max,
    staleIfErrorMs: c.stale_if_error,
    staleWhileRevalidateMs: c.stale_while_revalidate,
    keepMs: c.keep,
    storeSetCookie: c.store_set_cookie,
    honorClientCacheControl: c.honor_client_cache_control,
    cookieRequests: c.cookie_requests,
  };
  return {
    config,
    name: config.proxy.name,
    via: `1.1 ${config.proxy.name}`,
    pool: pools.get('default') ?? pools.values().next().value!,
    pools,
    routes: new RouteTable(config, pools, policy),
    store: theStore,
    coalescer: carry?.coalescer ?? new Coalescer(),
    coord: theCoord,
    invalidator: carry?.invalidator ?? new Invalidator(theStore),
    maintenance: carry?.maintenance ?? new Maintenance(config.maintenance),
    passMarks: carry?.passMarks ?? new LRUCache<string, true>({ max: 10_000, ttl: PASS_MARK_TTL_MS }),
    policy,
    maxObjectBytes: Math.floor(c.memory * c.max_object_share),
    log,
    stats: carry?.stats ?? { requests: 0, hits: 0, staleServed: 0, originFetches: 0, synthErrors: 0, errorsByType: {} },
    background: 0,
    now: carry?.now ?? clock ?? Date.now,
  };
}

// Maintenance: planned downtime without errors. `stale-only` serves whatever is cached (even past
// stale_if_error, up to keep) and never contacts the origin; `page` answers every request with the maintenance page,
// `Retry-After` set to the planned end. Modes come from the admin API (an override), from scheduled
// windows in config, from per-pool config, or from the global config mode — in that order.
import type { MaintenanceConfig, MaintenanceModeName } from '../config/schema.ts';
import { ageSeconds, objectState, ttlSeconds } from '../cache/object.ts';
import type { Headers } from '../cache/storable.ts';
import { primaryKey } from '../cache/key.ts';
import type { Exchange } from '../server/exchange.ts';
import type { ProxyContext } from './context.ts';
import { cacheStatusValue, deliverObject } from './deliver.ts';

export type ActiveMode = { mode: MaintenanceModeName; until: number | undefined; source: 'api' | 'window' | 'config' };
export type Override = { mode: MaintenanceModeName; until?: number };

/** Owns the maintenance state; survives configuration reloads (only `config` is replaced). */
export class Maintenance {
  config: MaintenanceConfig;
  /** Admin API overrides: '*' for global, else a pool name. */
  readonly #overrides = new Map<string, Override>();

  constructor(config: MaintenanceConfig) {
    this.config = config;
  }

  set(target: string, o: Override | undefined): void {
    if (o === undefined) this.#overrides.delete(target);
    else this.#overrides.set(target, o);
  }

  overrides(): Record<string, Override> {
    return Object.fromEntries(this.#overrides);
  }

  modeFor(pool: string, now: number): ActiveMode {
    // Asked once per request: with no override and no window (the usual case) it allocates nothing.
    if (this.#overrides.size === 0 && this.config.windows.length === 0) return configMode(this.config.pools[pool] ?? this.config.mode);
    for (const key of [pool, '*']) {
      const o = this.#overrides.get(key);
      if (!o) continue;
      if (o.until !== undefined && o.until <= now) this.#overrides.delete(key);
      else return { mode: o.mode, until: o.until, source: 'api' };
    }
    for (const w of this.config.windows) {
      if (w.from <= now && now < w.until && (!w.pools || w.pools.includes(pool))) return { mode: w.mode, until: w.until, source: 'window' };
    }
    const m = this.config.pools[pool] ?? this.config.mode;
    return { mode: m, until: undefined, source: 'config' };
  }
}

const fromConfig = (mode: MaintenanceModeName): ActiveMode => Object.freeze({ mode, until: undefined, source: 'config' });
const CONFIG_MODES: Readonly<Record<MaintenanceModeName, ActiveMode>> = { off: fromConfig('off'), 'stale-only': fromConfig('stale-only'), page: fromConfig('page') };
/** The configured mode as an ActiveMode: one frozen object per mode. */
function configMode(mode: MaintenanceModeName): ActiveMode {
  return CONFIG_MODES[mode];
}

/** The maintenance page: 503 (configurable) with Retry-After at the planned end. */
export function deliverMaintenancePage(ctx: ProxyContext, ex: Exchange, m: ActiveMode, now: number): void {
  const cfg = ctx.maintenance.config;
  const retryAfter = Math.max(1, Math.ceil(((m.until ?? now + cfg.retry_after) - now) / 1000));
  ex.served = 'maintenance';
  ex.cache = { hit: false, fwd: 'bypass', detail: `maintenance ${m.mode}` };
  ex.proxyStatus = `${ctx.name}; error=destination_unavailable; details="maintenance (${m.source})${m.until ? ` until ${new Date(m.until).toISOString()}` : ''}"`;
  const body = cfg.page.body;
  ex.bytesOut = ex.method === 'HEAD' ? 0 : Buffer.byteLength(body);
  ex.res.writeHead(cfg.page.status, [
    'content-type', 'text/html; charset=utf-8',
    'content-length', String(Buffer.byteLength(body)),
    'cache-control', 'no-store',
    'retry-after', String(retryAfter),
    'proxy-status', ex.proxyStatus,
    'cache-status', cacheStatusValue(ctx.name, ex.cache),
    'x-request-id', ex.id,
  ]);
  ex.res.end(ex.method === 'HEAD' ? undefined : body);
}

/**
 * stale-only: any stored copy (fresh, stale, or kept only for revalidation) is served; nothing else is —
 * except copies the origin forbade serving unvalidated (must-revalidate, proxy-revalidate, no-cache, s-maxage
 * without an RFC 5861 directive): RFC 9111 §5.2.2.2 requires an error instead, here the maintenance page.
 */
export function serveStaleOnly(ctx: ProxyContext, ex: Exchange, m: ActiveMode, now: number): void {
  if (ex.method === 'GET' || ex.method === 'HEAD') {
    const found = ctx.store.lookup(primaryKey(ex.host, ex.target), ex.req.headers as Headers);
    if (found.kind === 'found' && (objectState(found.object, now) === 'fresh' || !found.object.freshness.noStaleServe)) {
      const o = found.object;
      const ttl = ttlSeconds(o, now);
      ex.served = ttl > 0 ? 'hit' : 'stale';
      if (ttl <= 0) ex.staleMs = now - o.expiresAt;
      ex.cache = ttl > 0 ? { hit: true, ttl } : { hit: true, ttl, detail: `maintenance stale-only; age=${ageSeconds(o, now)}` };
      return deliverObject(ctx, ex, o, now);
    }
  }
  deliverMaintenancePage(ctx, ex, m, now);
}

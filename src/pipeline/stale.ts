// Stale: serving an expired object instead of waiting (stale-while-revalidate, RFC 5861 §3: the response's
// own directive or cache.stale_while_revalidate), because the client accepts it (max-stale, RFC 9111
// §5.2.1.2), or instead of an error (stale-if-error, RFC 5861 §4: "disconnected" in RFC 9111 §4.2.4).
// Never for objects that forbid it (decided in cache/storable.ts).
import { objectState, ttlSeconds, type CachedObject } from '../cache/object.ts';
import type { Exchange } from '../server/exchange.ts';
import type { ProxyContext } from './context.ts';
import { deliverObject } from './deliver.ts';

/** RFC 5861 §4: the origin answers that count as an error for stale-if-error (others are passed on). */
const ERROR_STATUSES: ReadonlySet<number> = new Set([500, 502, 503, 504]);

export function isErrorStatus(status: number): boolean {
  return ERROR_STATUSES.has(status);
}

/** May this object stand in for a failed fetch right now? */
export function usableOnError(o: CachedObject | undefined, now: number): o is CachedObject {
  if (!o) return false;
  const s = objectState(o, now);
  return s === 'fresh' || s === 'stale-revalidate' || s === 'stale-if-error';
}

/** Delivers a stale object; `reason` goes to Cache-Status detail and the log. */
export function deliverStale(ctx: ProxyContext, ex: Exchange, o: CachedObject, now: number, reason: string, fwdStatus?: number): void {
  const ttl = ttlSeconds(o, now);
  ex.served = 'stale';
  ex.staleMs = Math.max(0, now - o.expiresAt);
  ex.cache = fwdStatus === undefined && (reason === 'stale-while-revalidate' || reason === 'max-stale')
    ? { hit: true, ttl, detail: reason }
    : { hit: false, fwd: 'stale', fwdStatus, ttl, detail: reason, collapsed: ex.cache.collapsed };
  ctx.stats.staleServed++;
  deliverObject(ctx, ex, o, now);
}

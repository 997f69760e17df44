// Lookup: key + Vary → fresh | stale (serve now, refresh in background) | usable only on error | miss.
import { objectState, type CachedObject, type ObjectState } from '../cache/object.ts';
import { primaryKey } from '../cache/key.ts';
import { parseCacheControl } from '../cache/cache-control.ts';
import type { Headers } from '../cache/storable.ts';
import type { Exchange, FwdReason } from '../server/exchange.ts';
import type { ProxyContext } from './context.ts';

export type LookupOutcome =
  | { kind: 'fresh'; primary: string; object: CachedObject }
  | { kind: 'stale-revalidate'; primary: string; object: CachedObject }
  /** Must go to the origin; `object` (if any) revalidates it and covers an origin failure per its state. */
  | { kind: 'miss'; primary: string; fwd: FwdReason; object?: CachedObject; state?: ObjectState; passMarked: boolean };

export function lookup(ctx: ProxyContext, ex: Exchange, now: number): LookupOutcome {
  const primary = primaryKey(ex.host, ex.target);
  const passMarked = ctx.passMarks.has(primary);
  const found = ctx.store.lookup(primary, ex.req.headers as Headers);
  if (found.kind !== 'found') return { kind: 'miss', primary, fwd: found.kind, passMarked };
  const object = found.object;
  // Bans issued after this object was stored (lazy, like Varnish): a hard ban removes it, a soft one marks it stale.
  if (ctx.invalidator.apply(object.key, object)) return { kind: 'miss', primary, fwd: 'uri-miss', passMarked };
  let state = objectState(object, now);
  if (ctx.config.cache.honor_client_cache_control && (state === 'fresh' || state === 'stale-revalidate')) {
    // RFC 9111 §5.2.1: request no-cache (§5.2.1.4), an age over the client's max-age (§5.2.1.1) or less
    // freshness left than its min-fresh (§5.2.1.3) ask for validation; only when the operator allows it.
    const cc = parseCacheControl(ex.req.headers['cache-control']);
    const ageMs = object.freshness.initialAgeMs + (now - object.responseTimeMs);
    const tooOld = cc.maxAge !== undefined && ageMs > cc.maxAge * 1000;
    const tooClose = cc.minFresh !== undefined && object.expiresAt - now < cc.minFresh * 1000;
    if (cc.noCache || tooOld || tooClose) state = 'keep';
  }
  if (state === 'fresh') return { kind: 'fresh', primary, object };
  if (state === 'stale-revalidate') return { kind: 'stale-revalidate', primary, object };
  return { kind: 'miss', primary, fwd: 'stale', object, state, passMarked };
}

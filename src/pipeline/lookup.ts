// Lookup: key + Vary → fresh | stale (serve now, refresh in background) | stale the client accepts | miss
// (revalidate or fetch; a stored copy may still cover an origin failure) | unsatisfiable (only-if-cached).
import { objectState, type CachedObject, type ObjectState } from '../cache/object.ts';
import { authorityKey, primaryKey } from '../cache/key.ts';
import { parseCacheControl, type Directives } from '../cache/cache-control.ts';
import type { Headers } from '../cache/storable.ts';
import type { Exchange, FwdReason } from '../server/exchange.ts';
import type { ProxyContext } from './context.ts';

export type LookupOutcome =
  | { kind: 'fresh'; primary: string; object: CachedObject }
  /** Expired but within the response's stale-while-revalidate (or the operator's opt-in): serve now, refresh in the background. */
  | { kind: 'stale-revalidate'; primary: string; object: CachedObject }
  /** Expired, and the client said it accepts that much staleness (request `max-stale`, RFC 9111 §5.2.1.2). */
  | { kind: 'stale-accepted'; primary: string; object: CachedObject }
  /** Must go to the origin; `object` (if any) revalidates it and covers an origin failure per its state. */
  | { kind: 'miss'; primary: string; fwd: FwdReason; object?: CachedObject; state?: ObjectState; passMarked: boolean }
  /** Request `only-if-cached` and nothing usable is stored: 504 without contacting the origin (§5.2.1.7). */
  | { kind: 'unsatisfiable'; primary: string };

export function lookup(ctx: ProxyContext, ex: Exchange, now: number): LookupOutcome {
  const primary = ex.authority ? authorityKey(ex.authority, ex.target) : primaryKey(ex.host, ex.target);
  // RFC 9111 §5.2.1: request directives are advisory; honoured only when the operator allows it, so a
  // client cannot force origin traffic by default.
  const cc = ctx.config.cache.honor_client_cache_control ? parseCacheControl(ex.req.headers['cache-control']) : undefined;
  const out = decide(ctx, ex, primary, now, cc);
  if (cc?.onlyIfCached && out.kind === 'miss') return { kind: 'unsatisfiable', primary };
  return out;
}

function decide(ctx: ProxyContext, ex: Exchange, primary: string, now: number, cc: Directives | undefined): LookupOutcome {
  const passMarked = ctx.passMarks.has(primary);
  const found = ctx.store.lookup(primary, ex.req.headers as Headers);
  if (found.kind !== 'found') return { kind: 'miss', primary, fwd: found.kind, passMarked };
  const object = found.object;
  // Bans issued after this object was stored (lazy, like Varnish): a hard ban removes it, a soft one marks it stale.
  if (ctx.invalidator.apply(object.key, object)) return { kind: 'miss', primary, fwd: 'uri-miss', passMarked };
  let state = objectState(object, now);
  if (cc) {
    const ageMs = object.freshness.initialAgeMs + (now - object.responseTimeMs);
    // §5.2.1.4 no-cache, §5.2.1.1 an age over the client's max-age, §5.2.1.3 less freshness left than its
    // min-fresh: the stored response may not answer without validation.
    const tooOld = cc.maxAge !== undefined && ageMs > cc.maxAge * 1000;
    const tooClose = cc.minFresh !== undefined && object.expiresAt - now < cc.minFresh * 1000;
    const validate = cc.noCache || tooOld || tooClose;
    if (validate && (state === 'fresh' || state === 'stale-revalidate')) state = 'keep';
    // §5.2.1.2 max-stale: the client accepts a response this far past expiry — but never one the origin
    // forbade serving stale (§5.2.2.2 must-revalidate, proxy-revalidate, no-cache, s-maxage).
    // (Within a stale-while-revalidate window the object is served anyway, with its background refresh.)
    if (!validate && state !== 'fresh' && state !== 'stale-revalidate' && cc.maxStale !== undefined && !object.freshness.noStaleServe && now - object.expiresAt <= cc.maxStale * 1000) {
      return { kind: 'stale-accepted', primary, object };
    }
  }
  if (state === 'fresh') return { kind: 'fresh', primary, object };
  if (state === 'stale-revalidate') return { kind: 'stale-revalidate', primary, object };
  return { kind: 'miss', primary, fwd: 'stale', object, state, passMarked };
}

// The request's path, in order — read this file first.
//
//   receive → route → (maintenance: page, or stale-only) → lookup ─ fresh ──────────────────────────────→ deliver (hit)
//                            ├ stale, within stale-while-revalidate ─ deliver stale, refresh in background
//                            ├ stale, within the client's max-stale ─ deliver stale
//                            ├ only-if-cached and nothing usable ─ 504
//                            └ miss / expired ─ coalesce (per Vary variant) ─ waiter ─→ deliver the leader's result
//                                                        └ leader ─→ forward: choose backend → fetch (revalidate)
//                                                                     → store + deliver, or stale-if-error / explained error
//   other methods (extension methods too) → forward (pass) → invalidate the URI on success (RFC 9111 §4.4)
import type { Readable } from 'node:stream';
import { primaryKey, varyKey } from '../cache/key.ts';
import { ttlSeconds } from '../cache/object.ts';
import type { Headers } from '../cache/storable.ts';
import { ProxyError } from '../errors.ts';
import type { Exchange } from '../server/exchange.ts';
import type { ProxyContext } from './context.ts';
import { deliverObject, deliverSimple } from './deliver.ts';
import { forward, type ForwardPlan } from './forward.ts';
import { lookup, type LookupOutcome } from './lookup.ts';
import { isSafe } from './methods.ts';
import { receive } from './receive.ts';
import { deliverMaintenancePage, serveStaleOnly } from './maintenance.ts';
import { route, type Route } from './route.ts';
import { sharedMiss } from './shared.ts';
import { deliverStale, isErrorStatus, usableOnError } from './stale.ts';
import { proxyStatusForReceived, synthError } from './synth.ts';

/**
 * Runs the steps for one request. Returns undefined when the answer was given synchronously — a fresh hit,
 * a stale serve, a refusal, the maintenance page — and a promise only when something is waited for (a
 * fetch, a coalesced flight): a hit costs no promise, no microtask and no `then` in the listener (issue 12:
 * the minimal proxy's hit path is synchronous too). There is one path for hits, not a fast copy of it, so
 * what a hit carries cannot diverge from what it would carry on the slow path.
 */
export function handle(ctx: ProxyContext, ex: Exchange, body: Readable | null): Promise<void> | undefined {
  ctx.stats.requests++;
  const refusal = receive(ctx, ex);
  if (refusal) {
    ex.served = 'refused';
    deliverSimple(ctx, ex, refusal.status, refusal.text, refusal.headers);
    return undefined;
  }
  const r = route(ctx, ex);
  if (!r) {
    // FAILURES.md proxy_configuration_error: no route matched and there is no default pool.
    synthError(ctx, ex, new ProxyError({ type: 'proxy_configuration_error', phase: 'route', source: 'internal', context: { host: ex.host, path: ex.target } }));
    return undefined;
  }
  const now = ctx.now();
  const m = ctx.maintenance.modeFor(r.pool.name, now);
  if (m.mode === 'page') {
    deliverMaintenancePage(ctx, ex, m, now);
    return undefined;
  }
  if (m.mode === 'stale-only') {
    serveStaleOnly(ctx, ex, m, now);
    return undefined;
  }
  if (r.cache && (ex.method === 'GET' || ex.method === 'HEAD') && body === null) {
    const l = lookup(ctx, ex, now);
    switch (l.kind) {
      case 'fresh':
        ctx.stats.hits++;
        ex.served = 'hit';
        ex.cache = { hit: true, ttl: ttlSeconds(l.object, now) };
        deliverObject(ctx, ex, l.object, now);
        return undefined;
      case 'stale-revalidate':
        refreshInBackground(ctx, ex, r, l.primary, l.object);
        deliverStale(ctx, ex, l.object, now, 'stale-while-revalidate');
        return undefined;
      case 'stale-accepted':
        deliverStale(ctx, ex, l.object, now, 'max-stale');
        return undefined;
      case 'unsatisfiable':
        // RFC 9111 §5.2.1.7: only-if-cached and nothing stored may answer: 504, the origin is not contacted.
        ex.served = 'synth';
        ex.cache = { hit: false, fwd: 'uri-miss', detail: 'only-if-cached' };
        deliverSimple(ctx, ex, 504, 'Not in cache, and the request said only-if-cached (RFC 9111 §5.2.1.7)');
        return undefined;
      case 'miss':
        return miss(ctx, ex, r, l);
    }
  }
  return pass(ctx, ex, r, body);
}

/** Pass: forwarded without the cache; an unsafe method's success invalidates what it names (RFC 9111 §4.4). */
async function pass(ctx: ProxyContext, ex: Exchange, r: Route, body: Readable | null): Promise<void> {
  await forward(ctx, { pool: r.pool, route: r, primary: undefined, stale: undefined, flight: undefined, fwd: ex.method === 'GET' || ex.method === 'HEAD' ? 'request' : 'method', client: ex, source: ex, body });
  if (!isSafe(ex.method)) invalidateAfterUnsafe(ctx, ex);
}


/** Coalesce: join an identical in-flight fetch, or lead one. */
async function miss(ctx: ProxyContext, ex: Exchange, r: Route, l: Extract<LookupOutcome, { kind: 'miss' }>): Promise<void> {
  const plan: ForwardPlan = { pool: r.pool, route: r, primary: l.primary, stale: l.object, flight: undefined, fwd: l.fwd, client: ex, source: ex, body: null };
  // One fetch per Vary variant (once the URI's Vary is known), so variants do not wait behind each other.
  const flightKey = ctx.store.variantKey(l.primary, ex.req.headers as Headers);
  const existing = l.passMarked ? undefined : ctx.coalescer.get(flightKey);
  if (!existing) {
    if (l.passMarked) {
      plan.fwd = l.fwd;
      return forward(ctx, plan);
    }
    plan.flight = ctx.coalescer.lead(flightKey);
    try {
      // Fleet: the shared store, then the fleet-wide lock (pipeline/shared.ts); skipped when alone.
      if (ctx.coord.shared && (await sharedMiss(ctx, ex, plan, flightKey))) return;
      return await forward(ctx, plan);
    } finally {
      plan.flight.settle({ kind: 'uncacheable' }); // no-op when already settled
    }
  }
  ex.cache = { hit: false, fwd: l.fwd, collapsed: true };
  const w = await ctx.coalescer.wait(existing, ctx.config.cache.coalesce_wait, (cb) => ex.onGone(cb));
  const now = ctx.now();
  switch (w.kind) {
    case 'gone':
      return;
    case 'object': {
      const o = w.object;
      const matches = o.varyFields.length === 0 ? true : o.key === o.primary + varyKey(o.varyFields, ex.req.headers as Headers);
      if (matches && isErrorStatus(o.status) && !w.stored && usableOnError(l.object, now)) {
        // RFC 5861 §4: the leader's origin error is our error too: our stale copy answers, as it did the leader.
        ex.proxyStatus = proxyStatusForReceived(ctx.name, o.status, undefined);
        return deliverStale(ctx, ex, l.object, now, `stale-if-error; received-status=${o.status}`, o.status);
      }
      if (matches) {
        ex.served = 'collapsed';
        ex.cache = { hit: false, fwd: l.fwd, fwdStatus: o.status, collapsed: true, stored: w.stored, ttl: w.stored ? ttlSeconds(o, now) : undefined };
        if (o.status >= 500) ex.proxyStatus = proxyStatusForReceived(ctx.name, o.status, undefined);
        return deliverObject(ctx, ex, o, now);
      }
      // Another variant: fetch our own (coalescing with whoever else wants it).
      return miss(ctx, ex, r, { ...l, passMarked: false });
    }
    case 'uncacheable':
      return forward(ctx, plan);
    case 'error':
      ex.error = w.error;
      if (usableOnError(l.object, now)) return deliverStale(ctx, ex, l.object, now, `stale-if-error; error=${w.error.type}`);
      return synthError(ctx, ex, w.error);
    case 'timeout': {
      const err = new ProxyError({ type: 'http_response_timeout', phase: 'coalesce', source: 'internal', limit: { name: 'coalesce_wait', ms: ctx.config.cache.coalesce_wait }, elapsedMs: ex.elapsedMs() });
      ex.error = err;
      if (usableOnError(l.object, now)) return deliverStale(ctx, ex, l.object, now, `stale-if-error; error=${err.type}`);
      return synthError(ctx, ex, err);
    }
  }
}

/** Stale-while-revalidate (RFC 5861 §3): one background fetch refreshes a stale object while clients get the stale copy at once. */
function refreshInBackground(ctx: ProxyContext, ex: Exchange, r: Route, primary: string, stale: NonNullable<ForwardPlan['stale']>): void {
  const key = ctx.store.variantKey(primary, ex.req.headers as Headers);
  if (ctx.coalescer.get(key)) return; // a refresh is already running
  const flight = ctx.coalescer.lead(key);
  ctx.background++;
  const plan: ForwardPlan = { pool: r.pool, route: r, primary, stale, flight, fwd: 'stale', client: null, source: ex, body: null };
  // Fleet: one instance refreshes, the others adopt its result from the shared store (pipeline/shared.ts).
  (ctx.coord.shared ? sharedMiss(ctx, ex, plan, key).then((done) => (done ? undefined : forward(ctx, plan))) : forward(ctx, plan))
    .catch(() => undefined)
    .finally(() => {
      ctx.background--;
      flight.settle({ kind: 'uncacheable' });
    });
}

/** RFC 9111 §4.4: a non-error response to an unsafe method invalidates the target URI and Location/Content-Location. */
function invalidateAfterUnsafe(ctx: ProxyContext, ex: Exchange): void {
  const status = ex.res.statusCode;
  if (status < 200 || status >= 400 || ex.served !== 'origin') return;
  // Through the invalidator, so a fleet's other instances and shared store drop the URI too.
  ctx.invalidator.purgeUrl(primaryKey(ex.host, ex.target), 'hard');
  for (const name of ['location', 'content-location']) {
    const v = ex.originHeaders?.[name];
    if (typeof v !== 'string') continue;
    try {
      const u = new URL(v, `http://${ex.host}${ex.target}`);
      if (u.host.toLowerCase() === ex.host.toLowerCase()) ctx.invalidator.purgeUrl(primaryKey(ex.host, u.pathname + u.search), 'hard');
    } catch {
      // not a URI: nothing to invalidate
    }
  }
}

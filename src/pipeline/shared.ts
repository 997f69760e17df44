// Shared: what a local miss asks the fleet before going to the origin (only when a coordinator shares
// objects — without `fleet` this step is never entered):
//
//   shared store ─ fresh copy ────────────────────────────→ adopt locally, deliver as a hit
//        └ nothing / stale (kept as the stale-if-error stand-in)
//   fleet lock ─ acquired ─→ fetch from the origin; released (waking the waiters) once the result landed
//        ├ unavailable (coordination down or slow) ─→ fetch (local coalescing still holds)
//        └ held by another instance ─→ wait for it (bounded by cache.coalesce_wait), then look again;
//            its lock expired (the holder died) ─→ one waiter takes it over.
// A wait that runs out fetches from the origin: a fleet must never fail a request a lone instance would answer.
import { objectState, ttlSeconds, type CachedObject } from '../cache/object.ts';
import { variantKey } from '../cache/key.ts';
import type { Headers } from '../cache/storable.ts';
import { TIMEOUT_DEFAULTS } from '../config/schema.ts';
import { decodeObject } from '../coord/codec.ts';
import type { LockResult } from '../coord/types.ts';
import { SharingStore } from '../coord/store.ts';
import type { Exchange } from '../server/exchange.ts';
import type { ProxyContext } from './context.ts';
import { deliverObject } from './deliver.ts';
import type { ForwardPlan } from './forward.ts';

/** The lock outlives the origin's first-byte timeout by this much, so only a dead holder lets it expire. */
const LOCK_MARGIN_MS = 1000;

/**
 * Runs before the leader of a local flight goes to the origin — a client's miss, or a background
 * stale-while-revalidate refresh (`plan.client` null). True when the shared store had a fresh copy (the
 * client got it); false when the plan must be forwarded (maybe holding the fleet lock, which is released
 * when the flight settles).
 */
export async function sharedMiss(ctx: ProxyContext, ex: Exchange, plan: ForwardPlan, flightKey: string): Promise<boolean> {
  const flight = plan.flight!;
  const deadline = Date.now() + ctx.config.cache.coalesce_wait;
  const firstByte = plan.route?.timeouts?.first_byte ?? plan.pool.backends[0]?.timeouts.first_byte ?? TIMEOUT_DEFAULTS.first_byte;
  for (;;) {
    const epoch = ctx.store.epoch();
    const ttlMs = firstByte + LOCK_MARGIN_MS;
    // One round trip for a plain miss where the coordinator can (workers: coord/ipc.ts).
    const { found, lock } = await sharedLookup(ctx, plan.primary!, ex.req.headers as Headers, flightKey, ttlMs);
    const now = ctx.now();
    if (found && !ctx.invalidator.apply(found.key, found)) {
      const state = objectState(found, now);
      if (state === 'fresh') {
        adopt(ctx, found, now, epoch);
        flight.settle({ kind: 'object', object: found, stored: true });
        if (!plan.client) return true; // a background refresh: another instance refreshed it already
        ctx.stats.hits++;
        ex.served = 'hit';
        ex.cache = { hit: true, ttl: ttlSeconds(found, now), detail: 'fleet' };
        deliverObject(ctx, ex, found, now);
        return true;
      }
      // A stale shared copy revalidates and stands in for a failing origin (stale-if-error across the
      // fleet), unless this instance has a newer one.
      if (state !== 'keep' || found.etag || found.lastModified) {
        if (!plan.stale || plan.stale.storedAt < found.storedAt) {
          adopt(ctx, found, now, epoch);
          plan.stale = found;
        }
      }
    }
    const r = lock ?? (await ctx.coord.lock(flightKey, ttlMs));
    if (r.kind === 'acquired') {
      void flight.result.then((f) => r.lock.release(f.kind === 'object' && f.stored ? 'stored' : 'not-stored'));
      return false;
    }
    const left = deadline - Date.now();
    if (r.kind === 'unavailable' || left <= 0) return false;
    const w = await ctx.coord.waitUnlocked(flightKey, left);
    if (w === 'not-stored' || w === 'timeout' || plan.client?.clientGone) return false;
    // 'stored': the holder's object is in the shared store; 'expired': try to take the lock over.
  }
}

async function sharedLookup(ctx: ProxyContext, primary: string, reqHeaders: Headers, flightKey: string, ttlMs: number): Promise<{ found: CachedObject | undefined; lock: LockResult | undefined }> {
  const keyFor = (fields: readonly string[]) => variantKey(primary, fields, reqHeaders);
  if (ctx.coord.lookupOrLock) {
    const r = await ctx.coord.lookupOrLock(primary, keyFor, flightKey, ttlMs);
    return { found: r.found && decodeObject(r.found), lock: r.lock };
  }
  const s = await ctx.coord.lookup(primary, keyFor);
  return { found: s && decodeObject(s), lock: undefined };
}

function adopt(ctx: ProxyContext, o: CachedObject, now: number, epoch: number): void {
  if (ctx.store instanceof SharingStore) ctx.store.adopt(o, now, epoch);
}

// Storability (RFC 9111 §3, §3.5, §5.2.2), the targeted field (RFC 9213 §2.1) and the stale windows
// (RFC 5861, §4.2.4, §5.2.2.2/.4/.8/.10) as decided by decideStorage.
import { describe, expect, it } from 'vitest';
import { decideStorage, type Headers, type StoragePolicy, type StoreDecision } from './storable.ts';

const NOW = Date.UTC(2025, 0, 15, 12, 0, 0);
const DATE = new Date(NOW).toUTCString();
const POLICY: StoragePolicy = {
  defaultTtlMs: 0,
  heuristicFraction: 0.1,
  heuristicMaxMs: 86_400_000,
  staleIfErrorMs: 86_400_000,
  staleWhileRevalidateMs: 0,
  keepMs: 86_400_000,
  storeSetCookie: false,
  honorClientCacheControl: false,
  cookieRequests: 'pass',
};

function decide(headers: Headers, o: { status?: number; req?: Headers; policy?: Partial<StoragePolicy>; method?: string } = {}): StoreDecision {
  return decideStorage(
    o.method ?? 'GET',
    o.req ?? {},
    { status: o.status ?? 200, headers: { date: DATE, ...headers }, requestTimeMs: NOW, responseTimeMs: NOW },
    { ...POLICY, ...o.policy },
  );
}

function stored(d: StoreDecision) {
  if (!d.store) throw new Error(`not stored: ${d.reason}`);
  return d.freshness;
}

describe('storability (RFC 9111 §3)', () => {
  it('§3: a response with max-age is stored', () => {
    expect(stored(decide({ 'cache-control': 'max-age=60' })).lifetime).toEqual({ ms: 60_000, source: 'max-age' });
  });

  it('§5.2.2.5: no-store is never stored', () => {
    expect(decide({ 'cache-control': 'max-age=60, no-store' })).toMatchObject({ store: false, reason: 'no-store' });
  });

  it('§5.2.2.7: private (also qualified) is never stored by a shared cache', () => {
    expect(decide({ 'cache-control': 'private, max-age=60' })).toMatchObject({ store: false, reason: 'private' });
    expect(decide({ 'cache-control': 'private="x-user", max-age=60' })).toMatchObject({ store: false, reason: 'private' });
  });

  it('§3.5: a response to a request with Authorization is not stored without public, s-maxage or must-revalidate', () => {
    const req = { authorization: 'Bearer abc' };
    expect(decide({ 'cache-control': 'max-age=60' }, { req })).toMatchObject({ store: false, reason: 'authorization' });
    expect(decide({ 'cache-control': 'public, max-age=60' }, { req }).store).toBe(true);
    expect(decide({ 'cache-control': 's-maxage=60' }, { req }).store).toBe(true);
    expect(decide({ 'cache-control': 'max-age=60, must-revalidate' }, { req }).store).toBe(true);
  });

  it('§3: Set-Cookie is not stored unless cache.store_set_cookie', () => {
    const h = { 'cache-control': 'max-age=60', 'set-cookie': 'sid=1' };
    expect(decide(h)).toMatchObject({ store: false, reason: 'set-cookie' });
    expect(decide(h, { policy: { storeSetCookie: true } }).store).toBe(true);
  });

  it('§3: 206 and 304 are not complete responses and are not stored', () => {
    expect(decide({ 'cache-control': 'max-age=60' }, { status: 206 })).toMatchObject({ store: false, reason: 'status' });
    expect(decide({ 'cache-control': 'max-age=60' }, { status: 304 })).toMatchObject({ store: false, reason: 'status' });
  });

  it('§3: 5xx responses are never stored, even when they say max-age', () => {
    for (const status of [500, 502, 503, 504]) expect(decide({ 'cache-control': 'max-age=60' }, { status })).toMatchObject({ store: false, reason: 'error-status' });
  });

  it('§5.2.2.3: must-understand is stored only for a status code the cache understands', () => {
    expect(decide({ 'cache-control': 'max-age=60, must-understand' }, { status: 299 })).toMatchObject({ store: false, reason: 'status' });
    expect(decide({ 'cache-control': 'max-age=60' }, { status: 299 }).store).toBe(true);
    expect(decide({ 'cache-control': 'max-age=60, must-understand' }).store).toBe(true);
  });

  it('§3: only GET responses are stored', () => {
    expect(decide({ 'cache-control': 'max-age=60' }, { method: 'POST' })).toMatchObject({ store: false, reason: 'method' });
  });

  it('§4.1: Vary: * is never stored', () => {
    expect(decide({ 'cache-control': 'max-age=60', vary: 'Accept, *' })).toMatchObject({ store: false, reason: 'vary-star' });
  });

  it('§4.2.2: no freshness information and no validator → not stored with default_ttl 0', () => {
    expect(decide({})).toMatchObject({ store: false, reason: 'no-freshness' });
  });

  it('§4.2.2: default_ttl > 0 makes a response without freshness information cacheable', () => {
    expect(stored(decide({}, { policy: { defaultTtlMs: 30_000 } })).lifetime).toEqual({ ms: 30_000, source: 'default_ttl' });
  });

  it('§4.3: a heuristically cacheable status with only a validator is stored for revalidation', () => {
    const f = stored(decide({ etag: '"v1"' }));
    expect(f.lifetime.source).toBe('none');
    expect(f.swrMs).toBe(0); // every reuse is validated first
    expect(f.keepMs).toBe(POLICY.keepMs);
  });

  it('§3: a status that is not heuristically cacheable (302) with only a validator is not stored', () => {
    expect(decide({ etag: '"v1"', location: '/elsewhere' }, { status: 302 })).toMatchObject({ store: false, reason: 'no-freshness' });
    expect(decide({ etag: '"v1"', 'cache-control': 'max-age=60' }, { status: 302 }).store).toBe(true);
  });

  it('RFC 9111 §5.2.1.5: request no-store is ignored by default and honoured with honor_client_cache_control', () => {
    const req = { 'cache-control': 'no-store' };
    expect(decide({ 'cache-control': 'max-age=60' }, { req }).store).toBe(true);
    expect(decide({ 'cache-control': 'max-age=60' }, { req, policy: { honorClientCacheControl: true } })).toMatchObject({ store: false, reason: 'request-no-store' });
  });
});

describe('CDN-Cache-Control (RFC 9213 §2.1)', () => {
  it('RFC 9213 §2.1: CDN-Cache-Control governs freshness over Cache-Control and Expires', () => {
    const f = stored(decide({ 'cdn-cache-control': 'max-age=600', 'cache-control': 'max-age=5, s-maxage=10', expires: 'Thu, 01 Jan 1970 00:00:00 GMT' }));
    expect(f.lifetime).toEqual({ ms: 600_000, source: 'cdn-max-age' });
  });

  it('RFC 9213 §2.1: a Cache-Control no-cache aimed at browsers does not apply when CDN-Cache-Control is present', () => {
    const f = stored(decide({ 'cdn-cache-control': 'max-age=600', 'cache-control': 'no-cache' }));
    expect(f.alwaysRevalidate).toBe(false);
  });

  it('RFC 9213 §2.1: an empty CDN-Cache-Control falls back to Cache-Control', () => {
    expect(stored(decide({ 'cdn-cache-control': '', 'cache-control': 'max-age=7' })).lifetime).toEqual({ ms: 7000, source: 'max-age' });
  });

  it('RFC 9213 §2.1: a CDN-Cache-Control that is not a valid structured dictionary is ignored (Cache-Control governs)', () => {
    for (const bad of ['Max-Age=600', 'max-age=600s', 'max-age=600,,public', 'max-age = 600', 'max-age=600; ,']) {
      expect(stored(decide({ 'cdn-cache-control': bad, 'cache-control': 'max-age=7' })).lifetime, bad).toEqual({ ms: 7000, source: 'max-age' });
    }
    for (const good of ['max-age=600', 'max-age=600, public', 'max-age=600, ext="x, y", flag=?1', 'no-cache, max-age=600']) {
      expect(decide({ 'cdn-cache-control': good, 'cache-control': 'max-age=7' }).freshness?.lifetime.source, good).toBe('cdn-max-age');
    }
  });

  it('RFC 9213 §2.1: CDN-Cache-Control replaces Cache-Control entirely: no-store / private aimed at browsers do not stop storing', () => {
    expect(stored(decide({ 'cdn-cache-control': 'max-age=600', 'cache-control': 'no-store' })).lifetime).toEqual({ ms: 600_000, source: 'cdn-max-age' });
    expect(decide({ 'cdn-cache-control': 'max-age=600', 'cache-control': 'private' }).store).toBe(true);
    expect(decide({ 'cdn-cache-control': 'no-store', 'cache-control': 'max-age=600' })).toMatchObject({ store: false, reason: 'no-store' });
  });
});

describe('requests with Cookie (cache.cookie_requests, issue 11 item 8)', () => {
  const req = { cookie: 'sid=visitor-a' };
  it('pass (default): a response that only says max-age is not stored for a request with Cookie', () => {
    expect(decide({ 'cache-control': 'max-age=60' }, { req })).toMatchObject({ store: false, reason: 'cookie' });
    expect(decide({ 'cache-control': 'max-age=60' }).store).toBe(true);
  });

  it('pass: public, s-maxage or Vary: Cookie say the response may be shared', () => {
    expect(decide({ 'cache-control': 'public, max-age=60' }, { req }).store).toBe(true);
    expect(decide({ 'cache-control': 's-maxage=60' }, { req }).store).toBe(true);
    expect(decide({ 'cache-control': 'max-age=60', vary: 'Accept-Encoding, Cookie' }, { req }).store).toBe(true);
    expect(decide({ 'cdn-cache-control': 'public, max-age=60' }, { req }).store).toBe(true);
  });

  it('ignore: stored per RFC 9111, the Cookie does not matter', () => {
    expect(decide({ 'cache-control': 'max-age=60' }, { req, policy: { cookieRequests: 'ignore' } }).store).toBe(true);
  });
});

describe('stale windows (RFC 5861, RFC 9111 §4.2.4)', () => {
  it('§4.2.4 by default: a response that says nothing about staleness may stand in for errors only (stale_if_error), never be served stale while revalidating', () => {
    const f = stored(decide({ 'cache-control': 'max-age=60' }));
    expect([f.swrMs, f.sieMs, f.noStaleServe]).toEqual([0, 86_400_000, false]);
  });

  it('operator opt-in: cache.stale_while_revalidate gives responses without their own directive that window', () => {
    const f = stored(decide({ 'cache-control': 'max-age=60' }, { policy: { staleWhileRevalidateMs: 3_600_000, staleIfErrorMs: 600_000 } }));
    expect([f.swrMs, f.sieMs]).toEqual([3_600_000, 600_000]);
  });

  it('RFC 5861 §3/§4: explicit stale-while-revalidate / stale-if-error override the settings', () => {
    const f = stored(decide({ 'cache-control': 'max-age=60, stale-while-revalidate=30, stale-if-error=600' }, { policy: { staleWhileRevalidateMs: 3_600_000 } }));
    expect([f.swrMs, f.sieMs]).toEqual([30_000, 600_000]);
  });

  it('§5.2.2.2: must-revalidate is never served stale, even with an RFC 5861 directive', () => {
    const f = stored(decide({ 'cache-control': 'max-age=60, must-revalidate, stale-if-error=600, stale-while-revalidate=60' }));
    expect([f.swrMs, f.sieMs]).toEqual([0, 0]);
  });

  it('§5.2.2.8: proxy-revalidate is must-revalidate for a shared cache, even with an RFC 5861 directive', () => {
    const f = stored(decide({ 'cache-control': 'max-age=60, proxy-revalidate, stale-if-error=600, stale-while-revalidate=60' }));
    expect([f.swrMs, f.sieMs]).toEqual([0, 0]);
    expect(f.noStaleServe).toBe(true);
  });

  it('§5.2.2.4: no-cache is validated on every reuse and never served stale', () => {
    const f = stored(decide({ 'cache-control': 'max-age=60, no-cache, stale-if-error=600', etag: '"a"' }));
    expect(f.alwaysRevalidate).toBe(true);
    expect([f.swrMs, f.sieMs]).toEqual([0, 0]);
  });

  it('§5.2.2.10: s-maxage implies proxy-revalidate: no stale window without an explicit RFC 5861 directive', () => {
    const f = stored(decide({ 'cache-control': 's-maxage=60' }));
    expect(f.noStaleServe).toBe(true);
    expect([f.swrMs, f.sieMs]).toEqual([0, 0]);
  });

  it('§5.2.2.10 + RFC 5861: s-maxage with an explicit directive allows exactly that stale window', () => {
    const f = stored(decide({ 'cache-control': 's-maxage=60, stale-while-revalidate=30' }));
    expect(f.noStaleServe).toBe(false);
    expect([f.swrMs, f.sieMs]).toEqual([30_000, 0]);
  });

  it('§4.2.4: a response that is stale on arrival (max-age=0) is not served stale-while-revalidate even when the operator opted in', () => {
    const f = stored(decide({ 'cache-control': 'max-age=0' }, { policy: { staleWhileRevalidateMs: 3_600_000 } }));
    expect(f.swrMs).toBe(0);
    expect(f.sieMs).toBe(POLICY.staleIfErrorMs);
  });

  it('§5.3: an invalid Expires (0) is stale on arrival: no operator stale-while-revalidate', () => {
    const f = stored(decide({ expires: '0' }, { policy: { staleWhileRevalidateMs: 3_600_000 } }));
    expect(f.lifetime).toEqual({ ms: 0, source: 'expires' });
    expect(f.swrMs).toBe(0);
  });

  it('§5.3: Expires given in seconds by mistake (3600) is invalid, not a date in the year 3600', () => {
    expect(stored(decide({ expires: '3600' })).lifetime.ms).toBe(0);
  });

  it('RFC 5861 §3: an explicit stale-while-revalidate still applies to a max-age=0 response', () => {
    expect(stored(decide({ 'cache-control': 'max-age=0, stale-while-revalidate=30' })).swrMs).toBe(30_000);
  });

  it('§4.2.3: the upstream Age is part of the initial age', () => {
    expect(stored(decide({ 'cache-control': 'max-age=600', age: '100' })).initialAgeMs).toBe(100_000);
  });
});

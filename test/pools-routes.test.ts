// Routes (host/path → pool with its own cache switch, TTL, timeouts and retry policy) and the directors
// behind real sockets: hash by URL and by header, the reshuffle when one of five leaves, zone preference.
import { afterEach, describe, expect, it } from 'vitest';
import { startPools, type PoolsHarness } from './pools-harness.ts';

let h: PoolsHarness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const NO_STORE = { '*': { kind: 'normal', cacheControl: 'no-store', bodySize: 64 } } as const;
const backendsOf = (urls: string[], from: number, to: number, extra: Record<string, unknown>[] = []) =>
  urls.slice(from, to).map((url, i) => ({ name: `app${from + i + 1}`, url, ...(extra[i] ?? {}) }));

describe('routes', () => {
  it('pick a pool by host and path prefix; unmatched requests go to the default pool', async () => {
    h = await startPools({
      origins: [{ behaviours: NO_STORE }, { behaviours: NO_STORE }, { behaviours: NO_STORE }],
      config: (urls) => ({
        backends: backendsOf(urls, 2, 3),
        pools: [
          { name: 'api', backends: backendsOf(urls, 0, 1) },
          { name: 'assets', backends: backendsOf(urls, 1, 2) },
        ],
        routes: [
          { host: 'api.example.com', pool: 'api' },
          { host: '*.cdn.example.com', path_prefix: '/static/', pool: 'assets' },
        ],
      }),
    });
    await h.send('/v1/users', { headers: { host: 'api.example.com' } });
    await h.send('/static/app.js', { headers: { host: 'eu.cdn.example.com:8080' } });
    await h.send('/other/app.js', { headers: { host: 'eu.cdn.example.com' } });
    await h.send('/static/app.js', { headers: { host: 'cdn.example.com' } }); // not a subdomain
    await h.send('/', { headers: { host: 'www.example.com' } });
    expect(h.origins.map((o) => o.count())).toEqual([1, 1, 3]);
  });

  it('no route and no default pool: proxy_configuration_error', async () => {
    h = await startPools({
      origins: [{ behaviours: NO_STORE }],
      config: (urls) => ({ backends: [], pools: [{ name: 'api', backends: backendsOf(urls, 0, 1) }], routes: [{ path_prefix: '/api/', pool: 'api' }] }),
    });
    expect((await h.send('/api/x')).status).toBe(200);
    const r = await h.send('/elsewhere');
    expect(r.status).toBe(503);
    expect(r.headers['proxy-status']).toBe('lacquer; error=proxy_configuration_error');
    const line = await h.log.forRequest(String(r.headers['x-request-id']));
    expect((line.error as { context: unknown }).context).toEqual({ host: expect.stringMatching(/^127\.0\.0\.1:/), path: '/elsewhere' });
  });

  it('cache: false, ttl and grace per route', async () => {
    const b = { '/cached': { kind: 'normal', cacheControl: 'max-age=60' }, '*': { kind: 'normal' } } as const; // '*' says nothing about freshness
    h = await startPools({
      origins: [{ behaviours: b }],
      config: () => ({ routes: [{ path_prefix: '/cached', pool: 'default', cache: false }, { path_prefix: '/ttl/', pool: 'default', ttl: '30s', grace: '1m' }] }),
    });
    await h.send('/cached');
    await h.send('/cached');
    expect(h.origins[0]!.count('/cached')).toBe(2); // the route never caches
    await h.send('/ttl/a');
    const second = await h.send('/ttl/a');
    expect(h.origins[0]!.count('/ttl/a')).toBe(1); // route ttl made a response without freshness storable
    expect(second.headers['cache-status']).toMatch(/hit; ttl=(29|30)/);
    await h.send('/plain');
    await h.send('/plain');
    expect(h.origins[0]!.count('/plain')).toBe(2); // default_ttl 0 elsewhere
  });

  it('timeouts per route: a short first_byte on one route, the default elsewhere', async () => {
    h = await startPools({
      origins: [{ behaviours: { '*': { kind: 'slow', firstByteMs: 300, then: { cacheControl: 'no-store' } } } }],
      config: () => ({ routes: [{ path_prefix: '/fast/', pool: 'default', timeouts: { first_byte: '100ms' } }] }),
    });
    const t = performance.now();
    const fast = await h.send('/fast/x');
    expect(performance.now() - t).toBeLessThan(280);
    expect(fast.status).toBe(503);
    expect(fast.headers['proxy-status']).toMatch(/error=http_response_timeout; next-hop="app1"; details="first_byte_timeout=0.1s/);
    expect((await h.send('/slow/x')).status).toBe(200);
  });

  it('retry policy per route: 503 retried on another backend only where on_status says so; on_timeout likewise', async () => {
    const flaky = { '/flaky': { kind: 'error', status: 503 }, '/slowpoke': { kind: 'slow', firstByteMs: 600 }, '*': NO_STORE['*'] } as const;
    h = await startPools({
      origins: [{ behaviours: flaky }, { behaviours: NO_STORE }],
      config: (urls) => ({
        backends: [],
        pools: [{ name: 'p', director: 'fallback', backends: backendsOf(urls, 0, 2) }],
        routes: [
          { path_prefix: '/retry/', pool: 'p', timeouts: { first_byte: '150ms' }, retries: { on_status: [502, 503, 504], on_timeout: true } },
          { pool: 'p', timeouts: { first_byte: '150ms' } },
        ],
      }),
    });
    // The same faults under /retry/, the prefix of the route that retries them.
    h.origins[0]!.set('/retry/flaky', { kind: 'error', status: 503 });
    h.origins[0]!.set('/retry/slowpoke', { kind: 'slow', firstByteMs: 600 });
    const plain = await h.send('/flaky');
    expect(plain.status).toBe(503);
    expect(plain.headers['proxy-status']).toBe('lacquer; received-status=503; next-hop="app1"');
    const retried = await h.send('/retry/flaky');
    expect(retried.status).toBe(200);
    const line = await h.log.forRequest(String(retried.headers['x-request-id']));
    expect(line.attempts).toMatchObject([{ backend: 'app1', outcome: 'ok', status: 503 }, { backend: 'app2', outcome: 'ok', status: 200, retry: 'status' }]);
    const slow = await h.send('/retry/slowpoke');
    expect(slow.status).toBe(200);
    const slowLine = await h.log.forRequest(String(slow.headers['x-request-id']));
    expect(slowLine.attempts).toMatchObject([{ backend: 'app1', outcome: 'http_response_timeout' }, { backend: 'app2', outcome: 'ok', retry: 'timeout' }]);
    // on_timeout is off on the default route (after a success on app1: a backend failing in a row would
    // have its timeouts retried anyway, see pools-resilience black hole).
    expect((await h.send('/fine')).status).toBe(200);
    expect((await h.send('/slowpoke')).status).toBe(503);
  });
});

describe('directors behind sockets', () => {
  it('hash by URL: the same URL always lands on the same backend; one of five leaving moves ≈1/5', async () => {
    h = await startPools({
      origins: Array.from({ length: 5 }, () => ({ behaviours: NO_STORE })),
      config: (urls) => ({ backends: [], pools: [{ name: 'h', director: 'hash', backends: backendsOf(urls, 0, 5) }], routes: [{ pool: 'h' }] }),
    });
    const N = 300;
    const where = async () => {
      const out: string[] = [];
      for (let i = 0; i < N; i += 10) {
        const replies = await Promise.all(Array.from({ length: 10 }, (_, k) => h!.send(`/item/${i + k}`)));
        for (const r of replies) out.push(String((await h!.log.forRequest(String(r.headers['x-request-id']))).backend));
      }
      return out;
    };
    const a = await where();
    const b = await where();
    expect(b).toEqual(a);
    h.pool('h').setOverride('app3', 'sick');
    const c = await where();
    const moved = c.filter((x, i) => x !== a[i]).length;
    const movedOthers = c.filter((x, i) => x !== a[i] && a[i] !== 'app3').length;
    console.log(`hash (sockets): ${moved}/${N} URLs (${((moved / N) * 100).toFixed(1)}%) moved when app3 of 5 left; ${a.filter((x) => x === 'app3').length} had been on app3; ${movedOthers} moved from elsewhere`);
    expect(movedOthers).toBe(0);
    expect(moved).toBe(a.filter((x) => x === 'app3').length);
    expect(moved / N).toBeGreaterThan(0.12);
    expect(moved / N).toBeLessThan(0.28);
  });

  it('hash by header: a user sticks to one backend whatever the URL', async () => {
    h = await startPools({
      origins: Array.from({ length: 3 }, () => ({ behaviours: NO_STORE })),
      config: (urls) => ({ backends: [], pools: [{ name: 'h', director: 'hash', hash_key: 'header:x-user', backends: backendsOf(urls, 0, 3) }], routes: [{ pool: 'h' }] }),
    });
    for (const user of ['alice', 'bob', 'carol', 'dave']) {
      const seen = new Set<string>();
      for (let i = 0; i < 5; i++) {
        const r = await h.send(`/page/${i}`, { headers: { 'x-user': user } });
        seen.add(String((await h.log.forRequest(String(r.headers['x-request-id']))).backend));
      }
      expect(seen.size).toBe(1);
    }
  });

  it('zone preference: local zone while it has a healthy backend, other zones otherwise', async () => {
    h = await startPools({
      origins: Array.from({ length: 3 }, () => ({ behaviours: NO_STORE })),
      config: (urls) => ({
        backends: [],
        pools: [{ name: 'z', zone: 'eu', backends: backendsOf(urls, 0, 3, [{ zone: 'eu' }, { zone: 'us' }, { zone: 'us' }]) }],
        routes: [{ pool: 'z' }],
      }),
    });
    for (let i = 0; i < 6; i++) await h.send(`/a${i}`);
    expect(h.origins.map((o) => o.count())).toEqual([6, 0, 0]);
    h.pool('z').setOverride('app1', 'sick');
    for (let i = 0; i < 6; i++) await h.send(`/b${i}`);
    expect(h.origins.map((o) => o.count())).toEqual([6, 3, 3]);
  });

  it('least_connections sends new requests to the backend with fewer in flight', async () => {
    const slow = { '/slow': { kind: 'slow', firstByteMs: 500, then: { cacheControl: 'no-store' } }, ...NO_STORE } as const;
    h = await startPools({
      origins: [{ behaviours: slow }, { behaviours: slow }],
      config: (urls) => ({ backends: [], pools: [{ name: 'l', director: 'least_connections', backends: backendsOf(urls, 0, 2) }], routes: [{ pool: 'l' }] }),
    });
    const held = [h.send('/slow'), h.send('/slow'), h.send('/slow')];
    // 3 slow requests split 2/1 (or 1/2); every quick one now goes to the less busy backend.
    await new Promise((r) => setTimeout(r, 100));
    const busy = h.pool('l').backends.map((b) => b.load);
    const quiet = busy[0]! < busy[1]! ? 0 : 1;
    for (let i = 0; i < 4; i++) await h.send(`/q${i}`);
    expect(h.origins[quiet]!.count() - h.origins[quiet]!.count('/slow')).toBe(4);
    await Promise.all(held);
  });
});

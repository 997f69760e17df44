// Staleness with the shipped defaults (issue 10, RFC 9111 §4.2.4, RFC 5861): an expired object is
// revalidated before it is served; it stands in only when the origin fails (stale_if_error); it is
// served at once while refreshing only within the response's stale-while-revalidate or the operator's
// opt-in. Time moves with an injected clock, not sleeps (issue 11 item 19).
import { afterEach, describe, expect, it } from 'vitest';
import type { Behaviour } from '../src/lab/origin.ts';
import { sleep, startHarness, testClock, type Harness, type Reply } from './helpers.ts';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const cs = (r: Reply) => String(r.headers['cache-status']);
const origin = () => h!.origins[0]!;

async function start(first: Behaviour, config?: Record<string, unknown>) {
  const clock = testClock();
  h = await startHarness({ origins: [{ behaviours: { '*': first } }], config, clock: clock.now });
  return clock;
}

/** Waits (bounded) until no background refresh runs. */
async function backgroundDone(): Promise<void> {
  for (let i = 0; i < 200 && h!.proxy.ctx.background > 0; i++) await sleep(10);
}

describe('default config: revalidate before serving (RFC 9111 §4.2.4)', () => {
  it('an expired max-age=1 object is served only after the origin answered the conditional request; the 304 headers reach this client (§4.3.4)', async () => {
    const clock = await start({ kind: 'normal', cacheControl: 'max-age=1', etag: '"v1"', body: 'body-v1', headers: { 'x-version': '1' } });
    await h!.get('/p');
    clock.advance(2000);
    // The revalidation takes 200 ms: a stale-while-revalidate answer would not wait for it.
    origin().set('*', { kind: 'normal', cacheControl: 'max-age=60', etag: '"v1"', body: 'body-v1', delayMs: 200, headers: { 'x-version': '2', 'x-extra': 'new' } });
    const r = await h!.get('/p');
    expect(origin().count('/p')).toBe(2);
    expect(origin().requests[1]!.headers['if-none-match']).toBe('"v1"');
    expect(r.body).toBe('body-v1');
    expect(cs(r)).toMatch(/^lacquer; fwd=stale; fwd-status=304; ttl=\d+; stored$/);
    expect([r.headers['x-version'], r.headers['x-extra'], r.headers['cache-control']]).toEqual(['2', 'new', 'max-age=60']);
    const next = await h!.get('/p');
    expect(cs(next)).toMatch(/^lacquer; hit/);
    expect(next.headers['x-version']).toBe('2');
    expect(origin().count('/p')).toBe(2);
  });

  it('§4.3.5: a HEAD for an expired object revalidates the stored GET (conditional GET, 304): the HEAD answer and later GETs carry the new headers', async () => {
    const clock = await start({ kind: 'normal', cacheControl: 'max-age=1', etag: '"v1"', body: 'body-v1', headers: { 'x-version': '1' } });
    await h!.get('/p');
    clock.advance(2000);
    origin().set('*', { kind: 'normal', cacheControl: 'max-age=60', etag: '"v1"', body: 'body-v1', headers: { 'x-version': '2' } });
    const head = await h!.get('/p', {}, 'HEAD');
    expect(origin().requests[1]!.method).toBe('GET');
    expect(origin().requests[1]!.headers['if-none-match']).toBe('"v1"');
    expect([head.status, head.body, head.headers['x-version']]).toEqual([200, '', '2']);
    const get = await h!.get('/p');
    expect([get.body, get.headers['x-version']]).toEqual(['body-v1', '2']);
    expect(cs(get)).toMatch(/^lacquer; hit/);
  });

  it('an expired object without validators is fetched again before it is served (200 replaces it)', async () => {
    const clock = await start({ kind: 'normal', cacheControl: 'max-age=1', body: 'old' });
    await h!.get('/p');
    clock.advance(2000);
    origin().set('*', { kind: 'normal', cacheControl: 'max-age=60', body: 'new', delayMs: 100 });
    const r = await h!.get('/p');
    expect(r.body).toBe('new');
    expect(cs(r)).toBe('lacquer; fwd=stale; fwd-status=200; stored');
  });

  it('concurrent requests for an expired object make one revalidation and all wait for it (collapsed)', async () => {
    const clock = await start({ kind: 'normal', cacheControl: 'max-age=1', etag: '"v1"', body: 'v1' });
    await h!.get('/p');
    clock.advance(2000);
    origin().set('*', { kind: 'normal', cacheControl: 'max-age=60', etag: '"v2"', body: 'v2', delayMs: 200 });
    const replies = await Promise.all(Array.from({ length: 5 }, () => h!.get('/p')));
    expect(replies.map((r) => r.body)).toEqual(['v2', 'v2', 'v2', 'v2', 'v2']);
    expect(replies.filter((r) => cs(r).includes('collapsed'))).toHaveLength(4);
    expect(origin().count('/p')).toBe(2);
  });

  it('origin down → the same expired object is served stale with zero errors (stale_if_error, default 1d)', async () => {
    const clock = await start({ kind: 'normal', cacheControl: 'max-age=1', etag: '"v1"', body: 'warm' });
    await h!.get('/p');
    clock.advance(3_600_000); // an hour past expiry: well inside stale_if_error's default day
    await origin().refuse();
    const replies = await Promise.all(Array.from({ length: 20 }, () => h!.get('/p')));
    expect(replies.map((r) => r.status)).toEqual(Array(20).fill(200));
    expect(replies.every((r) => r.body === 'warm')).toBe(true);
    expect(cs(replies[0]!)).toMatch(/^lacquer; fwd=stale; ttl=-\d+; detail="stale-if-error; error=connection_refused"/);
  });

  it('origin answers 503 → the stale copy, never the error (and the error does not replace it)', async () => {
    const clock = await start({ kind: 'normal', cacheControl: 'max-age=1', body: 'warm' });
    await h!.get('/p');
    clock.advance(5000);
    origin().set('*', { kind: 'error', status: 503 });
    for (let i = 0; i < 3; i++) {
      const r = await h!.get('/p');
      expect([r.status, r.body]).toEqual([200, 'warm']);
      expect(cs(r)).toMatch(/detail="stale-if-error; received-status=503"/);
    }
  });

  it('past stale_if_error the origin failure is explained (503), not hidden', async () => {
    const clock = await start({ kind: 'normal', cacheControl: 'max-age=1', etag: '"v1"' }, { cache: { stale_if_error: '10m' } });
    await h!.get('/p');
    clock.advance(11 * 60_000);
    await origin().refuse();
    const r = await h!.get('/p');
    expect(r.status).toBe(503);
    expect(r.headers['proxy-status']).toMatch(/error=connection_refused/);
  });
});

describe('what is stored (RFC 9111 §3.1)', () => {
  it('§3.1: Proxy-Authenticate and Proxy-Authentication-Info are never stored (the miss passes them on, the hit does not)', async () => {
    await start({ kind: 'normal', cacheControl: 'max-age=60', headers: { 'proxy-authenticate': 'Basic realm="hop"', 'proxy-authentication-info': 'nextnonce="x"', 'x-kept': 'yes' } });
    const miss = await h!.get('/p');
    expect(miss.headers['proxy-authenticate']).toBe('Basic realm="hop"');
    const hit = await h!.get('/p');
    expect(cs(hit)).toMatch(/^lacquer; hit/);
    expect([hit.headers['proxy-authenticate'], hit.headers['proxy-authentication-info'], hit.headers['x-kept']]).toEqual([undefined, undefined, 'yes']);
  });
});

describe('maintenance stale-only (RFC 9111 §5.2.2.2)', () => {
  it('serves an expired ordinary object, but never an expired must-revalidate one (the maintenance page instead)', async () => {
    const clock = await start({ kind: 'normal', cacheControl: 'max-age=1', etag: '"a"' });
    origin().set('/mr', { kind: 'normal', cacheControl: 'max-age=1, must-revalidate', etag: '"b"' });
    await h!.get('/p');
    await h!.get('/mr');
    clock.advance(5000);
    h!.proxy.ctx.maintenance.set('*', { mode: 'stale-only' });
    expect((await h!.get('/p')).status).toBe(200);
    const mr = await h!.get('/mr');
    expect(mr.status).toBe(503);
    expect(mr.body).toContain('maintenance');
  });
});

describe('stale-while-revalidate: only when the origin or the operator allows it', () => {
  it('RFC 5861 §3: the origin\'s stale-while-revalidate=30 → served at once, refreshed in the background', async () => {
    const clock = await start({ kind: 'normal', cacheControl: 'max-age=1, stale-while-revalidate=30', body: 'old' });
    await h!.get('/p');
    clock.advance(5000);
    origin().set('*', { kind: 'normal', cacheControl: 'max-age=60', body: 'new', delayMs: 200 });
    const r = await h!.get('/p');
    expect(r.body).toBe('old');
    expect(cs(r)).toMatch(/^lacquer; hit; ttl=-\d+; detail="stale-while-revalidate"$/);
    await backgroundDone();
    expect(origin().count('/p')).toBe(2);
    expect((await h!.get('/p')).body).toBe('new');
  });

  it('past the origin\'s stale-while-revalidate window the request waits for the origin', async () => {
    const clock = await start({ kind: 'normal', cacheControl: 'max-age=1, stale-while-revalidate=30', body: 'old' });
    await h!.get('/p');
    clock.advance(40_000);
    origin().set('*', { kind: 'normal', cacheControl: 'max-age=60', body: 'new' });
    expect((await h!.get('/p')).body).toBe('new');
  });

  it('opt-in per route: stale_while_revalidate: 1h on /swr serves at once; other routes revalidate first', async () => {
    const clock = testClock();
    h = await startHarness({
      origins: [{ behaviours: { '*': { kind: 'normal', cacheControl: 'max-age=1', body: 'old' } } }],
      config: { routes: [{ path_prefix: '/swr', pool: 'default', stale_while_revalidate: '1h' }] },
      clock: clock.now,
    });
    await h.get('/swr/a');
    await h.get('/plain');
    clock.advance(5000);
    origin().set('*', { kind: 'normal', cacheControl: 'max-age=60', body: 'new', delayMs: 100 });
    const swr = await h.get('/swr/a');
    expect(swr.body).toBe('old');
    expect(cs(swr)).toMatch(/detail="stale-while-revalidate"/);
    const plain = await h.get('/plain');
    expect(plain.body).toBe('new');
    await backgroundDone();
    expect((await h.get('/swr/a')).body).toBe('new');
  });

  it('opt-in globally: cache.stale_while_revalidate: 1h', async () => {
    const clock = await start({ kind: 'normal', cacheControl: 'max-age=1', body: 'old' }, { cache: { stale_while_revalidate: '1h' } });
    await h!.get('/p');
    clock.advance(5000);
    origin().set('*', { kind: 'normal', cacheControl: 'max-age=60', body: 'new', delayMs: 100 });
    expect((await h!.get('/p')).body).toBe('old');
  });

  it('the deprecated grace no longer serves stale while revalidating: it is stale_if_error only', async () => {
    const clock = await start({ kind: 'normal', cacheControl: 'max-age=1', body: 'old' }, { cache: { grace: '1h' } });
    await h!.get('/p');
    clock.advance(5000);
    origin().set('*', { kind: 'normal', cacheControl: 'max-age=60', body: 'new' });
    expect((await h!.get('/p')).body).toBe('new');
    clock.advance(120_000);
    await origin().refuse();
    expect((await h!.get('/p')).body).toBe('new'); // stale, standing in for the refused fetch
  });
});

describe('client cache directives (RFC 9111 §5.2.1, cache.honor_client_cache_control)', () => {
  const honor = { cache: { honor_client_cache_control: true } };

  it('off (default): request no-cache and max-age=0 are answered from cache', async () => {
    await start({ kind: 'normal', cacheControl: 'max-age=60' });
    await h!.get('/p');
    expect(cs(await h!.get('/p', { 'cache-control': 'no-cache' }))).toMatch(/^lacquer; hit/);
    expect(cs(await h!.get('/p', { 'cache-control': 'max-age=0' }))).toMatch(/^lacquer; hit/);
    expect(origin().count('/p')).toBe(1);
  });

  it('§5.2.1.4 no-cache and §5.2.1.1 max-age: revalidate with the origin', async () => {
    const clock = await start({ kind: 'normal', cacheControl: 'max-age=600', etag: '"v1"' }, honor);
    await h!.get('/p');
    clock.advance(10_000);
    expect(cs(await h!.get('/p', { 'cache-control': 'no-cache' }))).toMatch(/fwd-status=304/);
    expect(cs(await h!.get('/p', { 'cache-control': 'max-age=5' }))).toMatch(/fwd-status=304/);
    expect(cs(await h!.get('/p', { 'cache-control': 'max-age=3600' }))).toMatch(/^lacquer; hit/);
    expect(origin().count('/p')).toBe(3);
  });

  it('§5.2.1.3 min-fresh: less freshness left than asked → revalidate', async () => {
    const clock = await start({ kind: 'normal', cacheControl: 'max-age=60', etag: '"v1"' }, honor);
    await h!.get('/p');
    clock.advance(50_000);
    expect(cs(await h!.get('/p', { 'cache-control': 'min-fresh=5' }))).toMatch(/^lacquer; hit/);
    expect(cs(await h!.get('/p', { 'cache-control': 'min-fresh=30' }))).toMatch(/fwd-status=304/);
  });

  it('§5.2.1.2 max-stale (with and without a value) accepts a stale copy; never against must-revalidate', async () => {
    const clock = await start({ kind: 'normal', cacheControl: 'max-age=1', body: 'old' }, honor);
    await h!.get('/p');
    h!.origins[0]!.set('/m', { kind: 'normal', cacheControl: 'max-age=1, must-revalidate', body: 'mr' });
    await h!.get('/m');
    clock.advance(10_000);
    origin().set('*', { kind: 'normal', cacheControl: 'max-age=60', body: 'new' });
    const a = await h!.get('/p', { 'cache-control': 'max-stale=60' });
    expect([a.body, cs(a)]).toEqual(['old', expect.stringMatching(/^lacquer; hit; ttl=-\d+; detail="max-stale"$/)]);
    expect((await h!.get('/p', { 'cache-control': 'max-stale' })).body).toBe('old');
    expect((await h!.get('/p', { 'cache-control': 'max-stale=5' })).body).toBe('new'); // 9 s stale > 5
    origin().set('/m', { kind: 'normal', cacheControl: 'max-age=60', body: 'mr2' });
    expect((await h!.get('/m', { 'cache-control': 'max-stale' })).body).toBe('mr2');
  });

  it('§5.2.1.7 only-if-cached: a stored response, or 504 without contacting the origin', async () => {
    await start({ kind: 'normal', cacheControl: 'max-age=60', body: 'cached' }, honor);
    const miss = await h!.get('/p', { 'cache-control': 'only-if-cached' });
    expect(miss.status).toBe(504);
    expect(origin().count('/p')).toBe(0);
    await h!.get('/p');
    const hit = await h!.get('/p', { 'cache-control': 'only-if-cached' });
    expect([hit.status, hit.body]).toEqual([200, 'cached']);
    expect(origin().count('/p')).toBe(1);
  });

  it('§5.2.1.5 no-store: the response is not stored', async () => {
    await start({ kind: 'normal', cacheControl: 'max-age=60' }, honor);
    await h!.get('/p', { 'cache-control': 'no-store' });
    expect(cs(await h!.get('/p'))).toMatch(/fwd=uri-miss/);
  });
});

describe('requests with Cookie (cache.cookie_requests, issue 11 item 8)', () => {
  it('pass (default): a max-age response to a request with Cookie is not stored, so another visitor never gets it', async () => {
    await start({ kind: 'normal', cacheControl: 'max-age=60', body: 'for visitor A' });
    const a = await h!.get('/p', { cookie: 'sid=A' });
    expect(cs(a)).toMatch(/detail="not-stored=cookie"/);
    const b = await h!.get('/p');
    expect(cs(b)).toMatch(/fwd=uri-miss/);
    expect(origin().count('/p')).toBe(2);
  });

  it('pass: an explicitly public response (or s-maxage) is stored and shared', async () => {
    await start({ kind: 'normal', cacheControl: 'public, max-age=60' });
    await h!.get('/p', { cookie: 'sid=A' });
    h!.origins[0]!.set('/s', { kind: 'normal', cacheControl: 's-maxage=60' });
    await h!.get('/s', { cookie: 'sid=A' });
    expect(cs(await h!.get('/p'))).toMatch(/^lacquer; hit/);
    expect(cs(await h!.get('/s'))).toMatch(/^lacquer; hit/);
  });

  it('pass: a request with Cookie that revalidates a shared object (304) refreshes it for everyone instead of dropping it', async () => {
    const clock = await start({ kind: 'normal', cacheControl: 'max-age=1', etag: '"v1"', body: 'shared' });
    await h!.get('/p');
    clock.advance(2000);
    origin().set('*', { kind: 'normal', cacheControl: 'max-age=60', etag: '"v1"', body: 'shared' });
    const a = await h!.get('/p', { cookie: 'sid=A' });
    expect(cs(a)).toMatch(/fwd-status=304; ttl=\d+; stored$/);
    expect(cs(await h!.get('/p'))).toMatch(/^lacquer; hit/);
    expect(origin().count('/p')).toBe(2);
  });

  it('ignore: stored per RFC 9111 whatever the Cookie', async () => {
    await start({ kind: 'normal', cacheControl: 'max-age=60' }, { cache: { cookie_requests: 'ignore' } });
    await h!.get('/p', { cookie: 'sid=A' });
    expect(cs(await h!.get('/p'))).toMatch(/^lacquer; hit/);
  });
});

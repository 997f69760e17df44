// What may be stored (RFC 9111 §3, §3.5, §4.1) and how much (cache.memory, cache.max_object_share),
// through a real proxy and a fake origin.
import { afterEach, describe, expect, it } from 'vitest';
import type { Behaviour } from '../src/lab/origin.ts';
import { startHarness, testClock, type Harness, type Reply } from './helpers.ts';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const cs = (r: Reply) => String(r.headers['cache-status']);

async function start(behaviours: Record<string, Behaviour>, config?: Record<string, unknown>): Promise<Harness> {
  h = await startHarness({ origins: [{ behaviours }], config });
  return h;
}

describe('storability (RFC 9111 §3)', () => {
  it('§5.2.2.5: a no-store response is not stored', async () => {
    await start({ '/p': { kind: 'normal', cacheControl: 'max-age=60, no-store' } });
    const a = await h!.get('/p');
    await h!.get('/p');
    expect(cs(a)).toMatch(/detail="not-stored=no-store"/);
    expect(h!.origins[0]!.count('/p')).toBe(2);
  });

  it('§5.2.2.7: a private response is not stored by a shared cache', async () => {
    await start({ '/p': { kind: 'normal', cacheControl: 'private, max-age=60' } });
    const a = await h!.get('/p');
    await h!.get('/p');
    expect(cs(a)).toMatch(/detail="not-stored=private"/);
    expect(h!.origins[0]!.count('/p')).toBe(2);
  });

  it('§3.5: a response to a request with Authorization is not stored without public, s-maxage or must-revalidate', async () => {
    await start({ '/plain': { kind: 'normal', cacheControl: 'max-age=60' }, '/public': { kind: 'normal', cacheControl: 'public, max-age=60' } });
    const auth = { authorization: 'Bearer secret-user-1' };
    const a = await h!.get('/plain', auth);
    expect(cs(a)).toMatch(/not-stored=authorization/);
    const b = await h!.get('/plain');
    expect(cs(b)).toMatch(/fwd=uri-miss/);
    expect(h!.origins[0]!.count('/plain')).toBe(2);

    await h!.get('/public', auth);
    const c = await h!.get('/public');
    expect(cs(c)).toMatch(/^lacquer; hit/);
    expect(h!.origins[0]!.count('/public')).toBe(1);
  });

  it('§3.5: s-maxage or must-revalidate also allow storing a response to an authorized request', async () => {
    await start({ '/s': { kind: 'normal', cacheControl: 's-maxage=60' }, '/m': { kind: 'normal', cacheControl: 'max-age=60, must-revalidate' } });
    const auth = { authorization: 'Basic dTpw' };
    for (const p of ['/s', '/m']) {
      await h!.get(p, auth);
      expect(cs(await h!.get(p, auth))).toMatch(/^lacquer; hit/);
      expect(h!.origins[0]!.count(p)).toBe(1);
    }
  });

  it('§3: a response with Set-Cookie is not stored by default, so one visitor\'s cookie never reaches another', async () => {
    await start({ '/p': { kind: 'normal', cacheControl: 'max-age=60', headers: { 'set-cookie': 'sid=visitor-1' } } });
    const a = await h!.get('/p');
    expect(cs(a)).toMatch(/not-stored=set-cookie/);
    await h!.get('/p');
    expect(h!.origins[0]!.count('/p')).toBe(2);
  });

  it('§3: cache.store_set_cookie: true stores a response with Set-Cookie', async () => {
    await start({ '/p': { kind: 'normal', cacheControl: 'max-age=60', headers: { 'set-cookie': 'theme=dark' } } }, { cache: { store_set_cookie: true } });
    await h!.get('/p');
    const b = await h!.get('/p');
    expect(cs(b)).toMatch(/^lacquer; hit/);
    expect(b.headers['set-cookie']).toBe('theme=dark');
  });

  it('§3: a 206 from the origin is not stored', async () => {
    await start({ '/p': { kind: 'normal', status: 206, cacheControl: 'max-age=60', headers: { 'content-range': 'bytes 0-9/100' }, body: '0123456789' } });
    const a = await h!.get('/p');
    expect(a.status).toBe(206);
    expect(cs(a)).toMatch(/not-stored=status/);
    await h!.get('/p');
    expect(h!.origins[0]!.count('/p')).toBe(2);
  });

  it('§3: a 5xx never replaces a good object, not even one that says max-age', async () => {
    const clock = testClock();
    h = await startHarness({ origins: [{ behaviours: { '/p': { kind: 'normal', cacheControl: 'max-age=1', etag: '"good"', body: 'good' } } }], config: { cache: { stale_if_error: '0s' } }, clock: clock.now });
    await h!.get('/p');
    h!.origins[0]!.set('/p', { kind: 'error', status: 500, headers: { 'cache-control': 'max-age=60' } });
    clock.advance(1100);
    const bad = await h!.get('/p');
    expect(bad.status).toBe(500);
    expect(cs(bad)).toBe('lacquer; fwd=stale; fwd-status=500; detail="not-stored=error-status"');
    // The 500 was not stored: the next request goes to the origin, revalidating the good object.
    h!.origins[0]!.set('/p', { kind: 'normal', cacheControl: 'max-age=60', etag: '"good"', body: 'good' });
    const after = await h!.get('/p');
    expect(after.status).toBe(200);
    expect(after.body).toBe('good');
    expect(cs(after)).toMatch(/fwd=stale; fwd-status=304/);
    expect(h!.origins[0]!.requests.at(-1)!.headers['if-none-match']).toBe('"good"');
  });
});

describe('Vary (RFC 9111 §4.1)', () => {
  const varying: Behaviour = { kind: 'normal', cacheControl: 'max-age=60', headers: { vary: 'Accept-Language' } };

  it('§4.1: each Accept-Language variant is stored and served to matching requests only', async () => {
    await start({ '/v': varying });
    const gz = await h!.get('/v', { 'accept-language': 'de' });
    const br = await h!.get('/v', { 'accept-language': 'fr' });
    expect(gz.headers['x-lab-served']).toBe('1');
    expect(br.headers['x-lab-served']).toBe('2');
    const gz2 = await h!.get('/v', { 'accept-language': 'de' });
    const br2 = await h!.get('/v', { 'accept-language': 'fr' });
    expect([gz2.headers['x-lab-served'], br2.headers['x-lab-served']]).toEqual(['1', '2']);
    expect(cs(gz2)).toMatch(/^lacquer; hit/);
    expect(cs(br2)).toMatch(/^lacquer; hit/);
    expect(h!.origins[0]!.count('/v')).toBe(2);
  });

  it('RFC 9211 §2.2: a request matching no stored variant is reported as fwd=vary-miss', async () => {
    await start({ '/v': varying });
    const a = await h!.get('/v', { 'accept-language': 'de' });
    expect(cs(a)).toBe('lacquer; fwd=uri-miss; fwd-status=200; stored');
    const b = await h!.get('/v', { 'accept-language': 'en' });
    expect(cs(b)).toBe('lacquer; fwd=vary-miss; fwd-status=200; stored');
  });

  it('§4.1: a response with Vary: * is never stored', async () => {
    await start({ '/v': { kind: 'normal', cacheControl: 'max-age=60', headers: { vary: '*' } } });
    const a = await h!.get('/v');
    expect(cs(a)).toMatch(/not-stored=vary-star/);
    await h!.get('/v');
    expect(h!.origins[0]!.count('/v')).toBe(2);
  });
});

describe('size limits (cache.max_object_share, cache.memory)', () => {
  it('an object larger than max_object_share × memory is passed, not stored', async () => {
    // 100 KiB × 0.1 = 10 KiB
    await start({ '/big': { kind: 'normal', cacheControl: 'max-age=60', bodySize: 20_000 }, '/small': { kind: 'normal', cacheControl: 'max-age=60', bodySize: 5000 } }, { cache: { memory: '100KiB', max_object_share: 0.1 } });
    const a = await h!.get('/big');
    expect(a.raw.length).toBe(20_000);
    expect(cs(a)).toMatch(/not-stored=too-large/);
    await h!.get('/big');
    expect(h!.origins[0]!.count('/big')).toBe(2);
    await h!.get('/small');
    expect(cs(await h!.get('/small'))).toMatch(/^lacquer; hit/);
  });

  it('the LRU bound (cache.memory) evicts the least recently used objects', async () => {
    // Each object: 4000 body bytes + headers + 512 bookkeeping ≈ 5 KiB; 32 KiB holds about six.
    await start({ '*': { kind: 'normal', cacheControl: 'max-age=60', bodySize: 4000 } }, { cache: { memory: '32KiB', max_object_share: 0.5 } });
    await h!.get('/o0');
    for (let i = 1; i <= 10; i++) {
      await h!.get(`/o${i}`);
      expect(cs(await h!.get('/o0'))).toMatch(/^lacquer; hit/); // keep /o0 the most recently used
    }
    expect(h!.origins[0]!.count('/o0')).toBe(1);
    const early = await h!.get('/o1');
    expect(cs(early)).toMatch(/fwd=uri-miss/);
    expect(cs(await h!.get('/o10'))).toMatch(/^lacquer; hit/);
    const stats = h!.proxy.ctx.store.stats();
    expect(stats.bytes).toBeLessThanOrEqual(32 * 1024);
    expect(stats.evictions).toBeGreaterThan(0);
  });
});

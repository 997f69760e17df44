// Freshness (RFC 9111 §4.2, RFC 9213) and Age (§4.2.3, §5.1) through a real proxy and a fake origin.
import { afterEach, describe, expect, it } from 'vitest';
import type { Behaviour } from '../src/lab/origin.ts';
import { startHarness, testClock, type Harness, type Reply } from './helpers.ts';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const cs = (r: Reply) => String(r.headers['cache-status']);
const ttl = (r: Reply) => Number(/ttl=(-?\d+)/.exec(cs(r))?.[1]);
const httpDate = (offsetMs: number) => new Date(Date.now() + offsetMs).toUTCString();

async function twice(behaviour: Behaviour, config?: Record<string, unknown>): Promise<[Reply, Reply]> {
  h = await startHarness({ origins: [{ behaviours: { '/p': behaviour } }], config });
  const a = await h.get('/p');
  const b = await h.get('/p');
  return [a, b];
}

describe('freshness lifetime (RFC 9111 §4.2.1)', () => {
  it('§4.2.1: s-maxage takes precedence over max-age and Expires', async () => {
    const [, b] = await twice({ kind: 'normal', cacheControl: 'max-age=100, s-maxage=300', headers: { expires: httpDate(900_000) } });
    expect(cs(b)).toMatch(/^lacquer; hit; /);
    expect(ttl(b)).toBeGreaterThanOrEqual(299);
    expect(ttl(b)).toBeLessThanOrEqual(300);
  });

  it('§4.2.1: max-age takes precedence over Expires', async () => {
    const [, b] = await twice({ kind: 'normal', cacheControl: 'max-age=100', headers: { expires: httpDate(900_000) } });
    expect(ttl(b)).toBeGreaterThanOrEqual(99);
    expect(ttl(b)).toBeLessThanOrEqual(100);
  });

  it('§4.2.1: without max-age the lifetime is Expires minus Date', async () => {
    const [, b] = await twice({ kind: 'normal', headers: { expires: httpDate(200_000) } });
    expect(cs(b)).toMatch(/^lacquer; hit; /);
    expect(ttl(b)).toBeGreaterThanOrEqual(198);
    expect(ttl(b)).toBeLessThanOrEqual(200);
    expect(h!.origins[0]!.count('/p')).toBe(1);
  });

  it('§5.3: an invalid Expires ("0") means already expired: the next request goes to the origin', async () => {
    const [, b] = await twice({ kind: 'normal', headers: { expires: '0' } });
    expect(h!.origins[0]!.count('/p')).toBe(2);
    expect(cs(b)).not.toMatch(/hit/);
  });

  it('§5.3: Expires in delta-seconds by mistake ("3600") is invalid, not the year 3600', async () => {
    const [, b] = await twice({ kind: 'normal', headers: { expires: '3600' } });
    expect(h!.origins[0]!.count('/p')).toBe(2);
    expect(cs(b)).not.toMatch(/hit/);
  });

  it('§4.2.4: max-age=0 without a validator is not served stale by grace while the origin is up', async () => {
    const [, b] = await twice({ kind: 'normal', cacheControl: 'max-age=0' });
    expect(h!.origins[0]!.count('/p')).toBe(2);
    expect(b.headers['x-lab-served']).toBe('2');
  });

  it('RFC 9213 §2.1: CDN-Cache-Control wins over Cache-Control and Expires', async () => {
    const [, b] = await twice({ kind: 'normal', cacheControl: 'no-cache, max-age=0', headers: { 'cdn-cache-control': 'max-age=120', expires: '0' } });
    expect(cs(b)).toMatch(/^lacquer; hit; ttl=(119|120)$/);
    expect(h!.origins[0]!.count('/p')).toBe(1);
  });

  it('RFC 9213 §2.1: CDN-Cache-Control can also shorten what Cache-Control allows', async () => {
    const [, b] = await twice({ kind: 'normal', cacheControl: 'max-age=600', headers: { 'cdn-cache-control': 'max-age=5' } });
    expect(cs(b)).toMatch(/^lacquer; hit; ttl=(4|5)$/);
  });
});

describe('heuristic and default freshness (RFC 9111 §4.2.2)', () => {
  it('§4.2.2: Last-Modified gives heuristic freshness of heuristic_fraction × its age', async () => {
    const [, b] = await twice({ kind: 'normal', lastModified: httpDate(-1000_000) });
    expect(cs(b)).toMatch(/^lacquer; hit; /);
    expect(ttl(b)).toBeGreaterThanOrEqual(99);
    expect(ttl(b)).toBeLessThanOrEqual(100);
  });

  it('§4.2.2: heuristic freshness is capped by cache.heuristic_max', async () => {
    const [, b] = await twice({ kind: 'normal', lastModified: httpDate(-365 * 86_400_000) }, { cache: { heuristic_max: '30s' } });
    expect(ttl(b)).toBeGreaterThanOrEqual(29);
    expect(ttl(b)).toBeLessThanOrEqual(30);
  });

  it('§4.2.2: no heuristic freshness for a status that is not heuristically cacheable (302)', async () => {
    const [a, b] = await twice({ kind: 'normal', status: 302, lastModified: httpDate(-1000_000), headers: { location: '/elsewhere' } });
    expect(a.status).toBe(302);
    expect(cs(a)).toMatch(/not-stored=no-freshness/);
    expect(cs(b)).toMatch(/fwd=uri-miss/);
    expect(h!.origins[0]!.count('/p')).toBe(2);
  });

  it('§4.2.2: with cache.default_ttl 0, a response with no freshness information and no validator is never served from cache', async () => {
    const [a, b] = await twice({ kind: 'normal' });
    expect(cs(a)).toBe('lacquer; fwd=uri-miss; fwd-status=200; detail="not-stored=no-freshness"');
    expect(b.headers['x-lab-served']).toBe('2');
    expect(h!.origins[0]!.count('/p')).toBe(2);
  });

  it('§4.2.2: cache.default_ttl > 0 makes such a response cacheable for that long', async () => {
    const [, b] = await twice({ kind: 'normal' }, { cache: { default_ttl: '30s' } });
    expect(cs(b)).toMatch(/^lacquer; hit; ttl=(29|30)$/);
    expect(h!.origins[0]!.count('/p')).toBe(1);
  });
});

describe('Age (RFC 9111 §4.2.3, §5.1)', () => {
  it('§5.1: Age on a hit grows with the time the object spent in the cache', async () => {
    const clock = testClock();
    h = await startHarness({ origins: [{ behaviours: { '/p': { kind: 'normal', cacheControl: 'max-age=60' } } }], clock: clock.now });
    await h.get('/p');
    const first = await h.get('/p');
    expect(first.headers['age']).toBe('0');
    clock.advance(1100);
    const later = await h.get('/p');
    expect(Number(later.headers['age'])).toBeGreaterThanOrEqual(1);
    expect(ttl(later)).toBeLessThanOrEqual(59);
  });

  it('§4.2.3: an upstream Age is added to the age and taken off the remaining freshness', async () => {
    const [, b] = await twice({ kind: 'normal', cacheControl: 'max-age=300', headers: { age: '100' } });
    expect(Number(b.headers['age'])).toBeGreaterThanOrEqual(100);
    expect(Number(b.headers['age'])).toBeLessThanOrEqual(101);
    expect(ttl(b)).toBeGreaterThanOrEqual(199);
    expect(ttl(b)).toBeLessThanOrEqual(200);
  });

  it('§4.2.3: a response older than its max-age on arrival (upstream Age) is not fresh', async () => {
    const [, b] = await twice({ kind: 'normal', cacheControl: 'max-age=10', headers: { age: '50' } }, { cache: { grace: '0s' } });
    expect(h!.origins[0]!.count('/p')).toBe(2);
    expect(cs(b)).not.toMatch(/hit/);
  });
});

// The Cache-Status response field (RFC 9211) in each of its shapes, through a real proxy.
import { afterEach, describe, expect, it } from 'vitest';
import { sleep, startHarness, testClock, type Harness, type Reply } from './helpers.ts';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const cs = (r: Reply) => String(r.headers['cache-status']);

describe('Cache-Status (RFC 9211)', () => {
  it('RFC 9211 §2.2/§2.3/§2.5: a miss that was stored: fwd=uri-miss; fwd-status=200; stored', async () => {
    h = await startHarness({ origins: [{ behaviours: { '*': { kind: 'normal', cacheControl: 'max-age=60' } } }] });
    const r = await h.get('/a');
    expect(cs(r)).toBe('lacquer; fwd=uri-miss; fwd-status=200; stored');
  });

  it('RFC 9211 §2.1/§2.4: a fresh hit: hit; ttl=<remaining seconds>', async () => {
    h = await startHarness({ origins: [{ behaviours: { '*': { kind: 'normal', cacheControl: 'max-age=60' } } }] });
    await h.get('/a');
    expect(cs(await h.get('/a'))).toMatch(/^lacquer; hit; ttl=(59|60)$/);
  });

  it('RFC 9211 §2.7: a request that waited on another\'s fetch says collapsed', async () => {
    h = await startHarness({ origins: [{ behaviours: { '*': { kind: 'normal', cacheControl: 'max-age=60', delayMs: 150 } } }] });
    const [a, b] = await Promise.all([h.get('/a'), sleep(30).then(() => h!.get('/a'))]);
    expect(cs(a)).toBe('lacquer; fwd=uri-miss; fwd-status=200; stored');
    expect(cs(b)).toMatch(/^lacquer; fwd=uri-miss; fwd-status=200; ttl=(59|60); stored; collapsed$/);
    expect(h.origins[0]!.count('/a')).toBe(1);
  });

  it('RFC 9211 §2.4/§2.8: a stale object served while revalidating: hit; ttl=<negative>; detail="stale-while-revalidate"', async () => {
    const clock = testClock();
    h = await startHarness({ origins: [{ behaviours: { '*': { kind: 'normal', cacheControl: 'max-age=1' } } }], config: { cache: { stale_while_revalidate: '1h' } }, clock: clock.now });
    await h.get('/a');
    clock.advance(2000);
    const r = await h.get('/a');
    expect(cs(r)).toMatch(/^lacquer; hit; ttl=-\d+; detail="stale-while-revalidate"$/);
  });

  it('RFC 9211 §2.2/§2.8: a stale object served for an origin failure: fwd=stale; ttl=<negative>; detail="stale-if-error; ..."', async () => {
    h = await startHarness({ origins: [{ behaviours: { '*': { kind: 'normal', cacheControl: 'max-age=10, stale-while-revalidate=0, stale-if-error=60', headers: { age: '20' } } } }] });
    await h.get('/a');
    await h.origins[0]!.refuse();
    expect(cs(await h.get('/a'))).toMatch(/^lacquer; fwd=stale; ttl=-(9|10|11); detail="stale-if-error; error=connection_refused"$/);
  });

  it('RFC 9211 §2.2: an unsafe method is forwarded as fwd=method; a not-stored answer says why in detail', async () => {
    h = await startHarness({ origins: [{ behaviours: { '*': { kind: 'normal', cacheControl: 'no-store' } } }] });
    expect(cs(await h.get('/a', {}, 'POST'))).toBe('lacquer; fwd=method; fwd-status=200');
    expect(cs(await h.get('/a'))).toBe('lacquer; fwd=uri-miss; fwd-status=200; detail="not-stored=no-store"');
  });
});

// Invalidation by unsafe methods (RFC 9111 §4.4) and request Cache-Control (RFC 9111 §5.2.1, off by
// default: cache.honor_client_cache_control), through a real proxy.
import { afterEach, describe, expect, it } from 'vitest';
import type { Behaviour } from '../src/lab/origin.ts';
import { startHarness, type Harness, type Reply } from './helpers.ts';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const cs = (r: Reply) => String(r.headers['cache-status']);
const cached: Behaviour = { kind: 'normal', cacheControl: 'max-age=60', etag: '"v1"', headers: { vary: 'Accept-Language' } };
const lab = (b: Behaviour) => ({ 'x-lab-behaviour': JSON.stringify(b) });

async function isHit(path: string, headers: Record<string, string> = {}): Promise<boolean> {
  return /^lacquer; hit/.test(cs(await h!.get(path, headers)));
}

describe('unsafe methods invalidate (RFC 9111 §4.4)', () => {
  for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
    it(`§4.4: a successful ${method} removes every Vary variant of the target URI`, async () => {
      h = await startHarness({ origins: [{ behaviours: { '*': cached } }] });
      await h.get('/r', { 'accept-language': 'de' });
      await h.get('/r', { 'accept-language': 'fr' });
      expect(await isHit('/r', { 'accept-language': 'de' })).toBe(true);
      const w = await h.get('/r', {}, method);
      expect(w.status).toBe(200);
      expect(cs(w)).toMatch(/fwd=method/);
      expect(await isHit('/r', { 'accept-language': 'de' })).toBe(false);
      expect(await isHit('/r', { 'accept-language': 'fr' })).toBe(false);
      expect(h.origins[0]!.count('/r')).toBe(5);
    });
  }

  it('§4.4: a successful POST also removes the same-host Location and Content-Location targets', async () => {
    h = await startHarness({ origins: [{ behaviours: { '*': cached } }] });
    for (const p of ['/items/1', '/items/2', '/items/3']) await h.get(p);
    const w = await h.get('/items', lab({ kind: 'normal', status: 201, headers: { location: '/items/1', 'content-location': `${h.url}/items/2` } }), 'POST');
    expect(w.status).toBe(201);
    expect(await isHit('/items/1')).toBe(false);
    expect(await isHit('/items/2')).toBe(false);
    expect(await isHit('/items/3')).toBe(true);
  });

  it('§4.4: a Location on another host is not invalidated here', async () => {
    h = await startHarness({ origins: [{ behaviours: { '*': cached } }] });
    await h.get('/items/1');
    await h.get('/items', lab({ kind: 'normal', status: 201, headers: { location: 'http://other.example/items/1' } }), 'POST');
    expect(await isHit('/items/1')).toBe(true);
  });

  it('§4.4: an error response to an unsafe method does not invalidate', async () => {
    h = await startHarness({ origins: [{ behaviours: { '*': cached } }] });
    await h.get('/r');
    const w500 = await h.get('/r', lab({ kind: 'error', status: 500 }), 'POST');
    expect(w500.status).toBe(500);
    const w404 = await h.get('/r', lab({ kind: 'normal', status: 404 }), 'DELETE');
    expect(w404.status).toBe(404);
    expect(await isHit('/r')).toBe(true);
    expect(h.origins[0]!.count('/r')).toBe(3);
  });

  it('§4.4: a failed unsafe request (origin down) does not invalidate', async () => {
    h = await startHarness({ origins: [{ behaviours: { '*': cached } }] });
    await h.get('/r');
    await h.origins[0]!.refuse();
    const w = await h.get('/r', {}, 'PUT');
    expect(w.status).toBe(503);
    expect(await isHit('/r')).toBe(true);
  });
});

describe('request Cache-Control (RFC 9111 §5.2.1)', () => {
  it('§5.2.1.4: a client no-cache is ignored by default: no origin request', async () => {
    h = await startHarness({ origins: [{ behaviours: { '*': cached } }] });
    await h.get('/r');
    for (const cc of ['no-cache', 'max-age=0', 'no-store']) {
      const r = await h.get('/r', { 'cache-control': cc, pragma: 'no-cache' });
      expect(cs(r), cc).toMatch(/^lacquer; hit/);
    }
    expect(h.origins[0]!.count('/r')).toBe(1);
  });

  it('§5.2.1.4: with honor_client_cache_control, a client no-cache revalidates with the origin', async () => {
    h = await startHarness({ origins: [{ behaviours: { '*': cached } }], config: { cache: { honor_client_cache_control: true } } });
    await h.get('/r');
    expect(await isHit('/r')).toBe(true);
    const r = await h.get('/r', { 'cache-control': 'no-cache' });
    expect(r.status).toBe(200);
    expect(r.raw.length).toBe(1024);
    expect(cs(r)).toMatch(/fwd=stale; fwd-status=304/);
    expect(h.origins[0]!.count('/r')).toBe(2);
    expect(h.origins[0]!.requests[1]!.headers['if-none-match']).toBe('"v1"');
  });

  it('§5.2.1.1: with honor_client_cache_control, a client max-age smaller than the age goes to the origin', async () => {
    h = await startHarness({ origins: [{ behaviours: { '*': { ...cached, headers: { age: '30' } } } }], config: { cache: { honor_client_cache_control: true } } });
    await h.get('/r');
    expect(await isHit('/r', { 'cache-control': 'max-age=60' })).toBe(true);
    expect(await isHit('/r', { 'cache-control': 'max-age=10' })).toBe(false);
    expect(await isHit('/r', { 'cache-control': 'max-age=0' })).toBe(false);
    expect(h.origins[0]!.count('/r')).toBe(3);
  });
});

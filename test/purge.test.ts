// Invalidation (issue 5): purge a URL with all its Vary variants, bans by prefix and regex (lazy at
// lookup + lurker), purge by tag, soft purge (stale still covers a failing origin), purge all.
import { afterEach, describe, expect, it } from 'vitest';
import { primaryKey } from '../src/cache/key.ts';
import { startHarness, type Harness } from './helpers.ts';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const cacheable = { kind: 'normal', cacheControl: 'max-age=60' } as const;

async function warm(h: Harness, paths: string[], headers: Record<string, string> = {}) {
  for (const p of paths) expect((await h.get(p, headers)).status).toBe(200);
}

describe('invalidation', () => {
  it('purges one URL with every Vary variant', async () => {
    h = await startHarness({ origins: [{ behaviours: { '*': { ...cacheable, headers: { vary: 'accept-language' } } } }] });
    await warm(h, ['/a'], { 'accept-language': 'en' });
    await warm(h, ['/a'], { 'accept-language': 'fr' });
    await warm(h, ['/b']);
    const host = new URL(h.url).host;
    expect(h.proxy.ctx.invalidator.purgeUrl(primaryKey(host, '/a'), 'hard')).toBe(2);
    expect((await h.get('/a', { 'accept-language': 'en' })).headers['cache-status']).toMatch(/fwd=uri-miss/);
    expect((await h.get('/b')).headers['cache-status']).toMatch(/hit/);
  });

  it('bans by prefix lazily at lookup and the lurker sweeps the rest', async () => {
    h = await startHarness({ origins: [{ behaviours: { '*': cacheable } }] });
    await warm(h, ['/blog/1', '/blog/2', '/blog/3', '/shop/1']);
    const host = new URL(h.url).host;
    expect(h.proxy.ctx.invalidator.ban({ kind: 'prefix', value: `${host}/blog/` }, 'hard')).toBe(3);
    // lazy: the banned object is a miss at lookup even before the lurker ran
    expect((await h.get('/blog/1')).headers['cache-status']).toMatch(/fwd=uri-miss/);
    expect(h.origins[0]!.count('/blog/1')).toBe(2);
    const before = h.proxy.ctx.store.stats().objects;
    const removed = h.proxy.ctx.invalidator.lurk();
    expect(removed).toBe(2); // /blog/2 and /blog/3; /blog/1 was refetched after the ban
    expect(h.proxy.ctx.store.stats().objects).toBe(before - 2);
    expect(h.proxy.ctx.invalidator.banCount).toBe(0); // a full sweep retires the ban
    expect((await h.get('/shop/1')).headers['cache-status']).toMatch(/hit/);
    expect((await h.get('/blog/1')).headers['cache-status']).toMatch(/hit/);
  });

  it('bans by regular expression and refuses an invalid one', async () => {
    h = await startHarness({ origins: [{ behaviours: { '*': cacheable } }] });
    await warm(h, ['/img/a.png', '/img/b.jpg', '/img/c.png']);
    expect(h.proxy.ctx.invalidator.ban({ kind: 'regex', value: '\\.png$' }, 'hard')).toBe(2);
    expect((await h.get('/img/b.jpg')).headers['cache-status']).toMatch(/hit/);
    expect((await h.get('/img/a.png')).headers['cache-status']).toMatch(/fwd=uri-miss/);
    expect(() => h!.proxy.ctx.invalidator.ban({ kind: 'regex', value: '(' }, 'hard')).toThrow();
  });

  it('purges by Surrogate-Key and Cache-Tag', async () => {
    h = await startHarness({
      origins: [
        {
          behaviours: {
            '/p1': { ...cacheable, headers: { 'surrogate-key': 'product-1 catalog' } },
            '/p2': { ...cacheable, headers: { 'cache-tag': 'product-2,catalog' } },
            '/home': { ...cacheable, headers: { 'surrogate-key': 'home' } },
          },
        },
      ],
    });
    await warm(h, ['/p1', '/p2', '/home']);
    expect(h.proxy.ctx.invalidator.purgeTags(['catalog'], 'hard')).toBe(2);
    expect((await h.get('/home')).headers['cache-status']).toMatch(/hit/);
    expect((await h.get('/p2')).headers['cache-status']).toMatch(/fwd=uri-miss/);
  });

  it('soft purge marks stale: the next request revalidates, and stale still covers a failing origin', async () => {
    h = await startHarness({ origins: [{ behaviours: { '*': cacheable } }] });
    await warm(h, ['/s']);
    const host = new URL(h.url).host;
    expect(h.proxy.ctx.invalidator.purgeUrl(primaryKey(host, '/s'), 'soft')).toBe(1);
    await h.origins[0]!.refuse();
    const r = await h.get('/s');
    expect(r.status).toBe(200);
    expect(String(r.headers['cache-status'])).toMatch(/ttl=-?0|ttl=-\d/);
    expect(String(r.headers['cache-status'])).toMatch(/stale/);
  });

  it('purge all removes everything and answers the count', async () => {
    h = await startHarness({ origins: [{ behaviours: { '*': cacheable } }] });
    await warm(h, ['/1', '/2', '/3']);
    expect(h.proxy.ctx.invalidator.purgeAll('hard')).toBe(3);
    expect(h.proxy.ctx.store.stats().objects).toBe(0);
  });
});

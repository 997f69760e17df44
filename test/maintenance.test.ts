// Maintenance (issue 5): `page` answers the maintenance page with Retry-After at the planned end;
// `stale-only` serves whatever is cached, even past grace up to keep, and never touches the origin;
// scheduled windows switch it automatically; the admin override is per pool or global.
import { afterEach, describe, expect, it } from 'vitest';
import { startHarness, sleep, testClock, type Harness } from './helpers.ts';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

describe('maintenance', () => {
  it('page mode from config: 503 with Retry-After and the page, origin untouched', async () => {
    h = await startHarness({ config: { maintenance: { mode: 'page', retry_after: '2m' } } });
    const r = await h.get('/any');
    expect(r.status).toBe(503);
    expect(r.headers['retry-after']).toBe('120');
    expect(r.body).toContain('Down for maintenance');
    expect(String(r.headers['proxy-status'])).toMatch(/error=destination_unavailable; details="maintenance \(config\)"/);
    expect(h.origins[0]!.count()).toBe(0);
  });

  it('a scheduled window switches on by itself and Retry-After points at its end', async () => {
    const now = Date.now();
    h = await startHarness({
      config: { maintenance: { windows: [{ from: new Date(now - 1000).toISOString(), until: new Date(now + 60_000).toISOString(), mode: 'page' }] } },
    });
    const r = await h.get('/x');
    expect(r.status).toBe(503);
    expect(Number(r.headers['retry-after'])).toBeGreaterThanOrEqual(58);
    expect(Number(r.headers['retry-after'])).toBeLessThanOrEqual(60);
  });

  it('a window in the future or the past changes nothing', async () => {
    const now = Date.now();
    h = await startHarness({
      config: {
        maintenance: {
          windows: [
            { from: new Date(now + 60_000).toISOString(), until: new Date(now + 120_000).toISOString(), mode: 'page' },
            { from: new Date(now - 120_000).toISOString(), until: new Date(now - 60_000).toISOString(), mode: 'page' },
          ],
        },
      },
    });
    expect((await h.get('/x')).status).toBe(200);
  });

  it('stale-only serves cached objects even past stale_if_error, and the maintenance page for the rest, never contacting the origin', async () => {
    const clock = testClock();
    h = await startHarness({
      origins: [{ behaviours: { '*': { kind: 'normal', cacheControl: 'max-age=1', etag: '"e1"' } } }],
      config: { cache: { stale_if_error: '0s', keep: '1h' } },
      clock: clock.now,
    });
    expect((await h.get('/cached')).status).toBe(200);
    clock.advance(1100); // now past expiry and past stale_if_error: only kept for revalidation
    h.proxy.ctx.maintenance.set('*', { mode: 'stale-only' });
    const before = h.origins[0]!.count();
    const r = await h.get('/cached');
    expect(r.status).toBe(200);
    expect(String(r.headers['cache-status'])).toMatch(/ttl=-\d+; detail="maintenance stale-only/);
    const miss = await h.get('/not-cached');
    expect(miss.status).toBe(503);
    expect(miss.body).toContain('Down for maintenance');
    expect(h.origins[0]!.count()).toBe(before);
    // back to normal: the expired object is revalidated with the origin again
    h.proxy.ctx.maintenance.set('*', undefined);
    expect((await h.get('/cached')).status).toBe(200);
    expect(h.origins[0]!.count()).toBe(before + 1);
  });

  it('an override for one pool leaves the others alone, and expires at its end', async () => {
    h = await startHarness({ origins: [{}, {}] });
    // The harness builds the `default` pool from its origins; maintenance of another pool must not apply.
    h.proxy.ctx.maintenance.set('other', { mode: 'page' });
    expect((await h.get('/a')).status).toBe(200);
    h.proxy.ctx.maintenance.set('default', { mode: 'page', until: Date.now() + 300 });
    expect((await h.get('/a')).status).toBe(503);
    await sleep(350);
    expect((await h.get('/a')).status).toBe(200);
  });
});

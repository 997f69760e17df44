import { afterEach, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from './helpers.ts';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

describe('core proxy', () => {
  it('serves the second request from cache without touching the origin', async () => {
    h = await startHarness({ origins: [{ behaviours: { '*': { kind: 'normal', cacheControl: 'max-age=60' } } }] });
    const a = await h.get('/page');
    const b = await h.get('/page');
    expect(a.status).toBe(200);
    expect(a.headers['cache-status']).toMatch(/fwd=uri-miss.*stored/);
    expect(b.headers['cache-status']).toMatch(/^lacquer; hit; ttl=(59|60)$/);
    expect(b.body).toBe(a.body);
    expect(h.origins[0]!.count('/page')).toBe(1);
    expect(b.headers['x-request-id']).toBeTruthy();
    expect(b.headers['via']).toMatch(/1\.1 lacquer/);
  });

  it('answers an uncached path with an explained 503 when the origin refuses (connection_refused)', async () => {
    h = await startHarness();
    await h.origins[0]!.refuse();
    const r = await h.get('/x');
    expect(r.status).toBe(503);
    expect(r.headers['proxy-status']).toMatch(/^lacquer; error=connection_refused; next-hop="app1"/);
    expect(r.headers['retry-after']).toBe('5');
    const line = await h.log.forRequest(String(r.headers['x-request-id']));
    expect(line.error?.class).toBe('connection_refused');
    expect(line.error?.phase).toBe('connect');
    expect(line.error?.hint).toMatch(/nothing was sent/);
  });

  it('collapses 100 concurrent misses into one origin request', async () => {
    h = await startHarness({ origins: [{ behaviours: { '*': { kind: 'normal', cacheControl: 'max-age=60', delayMs: 200 } } }] });
    const replies = await Promise.all(Array.from({ length: 100 }, () => h!.get('/hot')));
    expect(h.origins[0]!.count('/hot')).toBe(1);
    expect(replies.every((r) => r.status === 200 && r.body === replies[0]!.body)).toBe(true);
    expect(replies.filter((r) => String(r.headers['cache-status']).includes('collapsed')).length).toBe(99);
  });
});

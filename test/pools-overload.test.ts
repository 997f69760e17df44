// Overload: a backend's max_connections with a bounded, timed wait queue; waiters that leave with their
// client; pool-level load shedding (stale if any, else a fast 503); the retry budget in a total outage.
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startPools, sleep, until, type PoolsHarness } from './pools-harness.ts';

let h: PoolsHarness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const slowNoStore = (ms: number) => ({ kind: 'slow', firstByteMs: ms, then: { cacheControl: 'no-store', bodySize: 64 } }) as const;

describe('max_connections and the wait queue', () => {
  it('caps concurrent requests; a waiter times out after queue_timeout, a full queue refuses at once', async () => {
    h = await startPools({
      origins: [{ behaviours: { '*': slowNoStore(400) } }],
      config: (urls) => ({ backends: [{ name: 'app1', url: urls[0], max_connections: 1 }], overload: { queue_timeout: '100ms', backend_queue: 1 } }),
    });
    const timed = (p: string) => {
      const t = performance.now();
      return h!.send(p).then((r) => ({ r, ms: performance.now() - t }));
    };
    const first = timed('/one');
    await until(() => h!.origins[0]!.count() === 1, 1000);
    const second = timed('/two');
    await sleep(10);
    const third = await timed('/three');
    expect(third.r.status).toBe(503);
    expect(third.r.headers['proxy-status']).toMatch(/^lacquer; error=connection_limit_reached; next-hop="app1"$/);
    expect(third.ms).toBeLessThan(80); // queue full: refused at once, no waiting
    const s = await second;
    expect(s.r.status).toBe(503);
    expect(s.r.headers['proxy-status']).toMatch(/error=connection_limit_reached; next-hop="app1"; details="queue_timeout=0.1s elapsed=0.1\d*s"/);
    expect(s.ms).toBeGreaterThanOrEqual(95);
    expect(s.ms).toBeLessThan(350);
    expect((await first).r.status).toBe(200);
    expect(h.origins[0]!.count()).toBe(1);
    const line = await h.log.forRequest(String(s.r.headers['x-request-id']));
    expect((line.error as { health: Record<string, unknown> }).health).toMatchObject({ pool: 'default', state: 'healthy', max: 1, circuit: 'closed' });
    // Our own cap is not the backend failing: no ejection counted.
    expect(h.pool().snapshot().backends[0]!.consecutiveFailures).toBe(0);
  });

  it('a queued request whose client leaves gives up its place at once', async () => {
    h = await startPools({
      origins: [{ behaviours: { '*': slowNoStore(600) } }],
      config: (urls) => ({ backends: [{ name: 'app1', url: urls[0], max_connections: 1 }], overload: { queue_timeout: '5s' } }),
    });
    const holder = h.send('/hold');
    await until(() => h!.origins[0]!.count() === 1, 1000);
    const ac = new AbortController();
    const waiter = request(`${h.url}/wait`, { signal: ac.signal }).catch((e: unknown) => e);
    expect(await until(() => h!.pool().snapshot().backends[0]!.queueLength === 1, 1000)).toBe(true);
    ac.abort();
    expect(await until(() => h!.pool().snapshot().backends[0]!.queueLength === 0, 300)).toBe(true);
    await waiter;
    expect((await holder).status).toBe(200);
    await sleep(50);
    expect(h.origins[0]!.count('/wait')).toBe(0);
  });

  it('spills to a backend with a free slot instead of queueing behind a full one', async () => {
    h = await startPools({
      origins: [{ behaviours: { '*': slowNoStore(300) } }, { behaviours: { '*': slowNoStore(300) } }],
      config: (urls) => ({ backends: urls.map((url, i) => ({ name: `app${i + 1}`, url, max_connections: 2 })), overload: { queue_timeout: '50ms' } }),
    });
    const replies = await Promise.all(Array.from({ length: 4 }, (_, i) => h!.send(`/s${i}`)));
    expect(replies.map((r) => r.status)).toEqual([200, 200, 200, 200]);
    expect(h.origins.map((o) => o.count())).toEqual([2, 2]);
  });
});

describe('pool-level load shedding', () => {
  it('when the pool queue is full: a cacheable request gets its stale copy, others a fast 503 with Retry-After', async () => {
    h = await startPools({
      // /slow holds the pool's one slot long enough for the two shed requests, even on a loaded machine.
      origins: [{ behaviours: { '/slow': slowNoStore(2000), '/c': { kind: 'normal', cacheControl: 'max-age=1, stale-while-revalidate=0, stale-if-error=60', bodySize: 32 } } }],
      config: () => ({ overload: { max_concurrency: 1, pool_queue: 0 } }),
    });
    expect((await h.send('/c')).status).toBe(200);
    await sleep(1100); // /c is now stale, usable only if the origin fails
    const slow = h.send('/slow');
    expect(await until(() => h!.origins[0]!.count('/slow') === 1, 3000)).toBe(true);
    const t = performance.now();
    const shedPlain = await h.send('/other');
    const plainMs = performance.now() - t;
    const shedCached = await h.send('/c');
    expect(shedPlain.status).toBe(503);
    expect(shedPlain.headers['retry-after']).toBe('5');
    expect(shedPlain.headers['proxy-status']).toBe('lacquer; error=connection_limit_reached');
    expect(plainMs).toBeLessThan(250); // refused at once, not after a queue wait (slack for a loaded CI)
    expect(shedCached.status).toBe(200);
    expect(shedCached.headers['cache-status']).toMatch(/fwd=stale.*stale-if-error; error=connection_limit_reached/);
    expect((await slow).status).toBe(200);
    expect(h.origins[0]!.count('/other')).toBe(0);
    expect(h.pool().snapshot().shed).toBe(2);
    const line = await h.log.forRequest(String(shedPlain.headers['x-request-id']));
    expect((line.error as { context: Record<string, unknown> }).context).toMatchObject({ pool: 'default', max_concurrency: 1, shed: true });
  });
});

describe('retry budget', () => {
  it('caps retries during a total outage: the origins see at most requests + min + 20%', async () => {
    const reset = { '*': { kind: 'reset-before-headers' } } as const;
    h = await startPools({
      origins: [{ behaviours: reset }, { behaviours: reset }, { behaviours: reset }],
      config: () => ({ retries: { max: 2, budget: { percent: 20, min: 5, window: '10s' } }, health: { consecutive_failures: 0 } }),
    });
    const N = 100;
    let errors = 0;
    for (let w = 0; w < N; w += 4) {
      const replies = await Promise.all([0, 1, 2, 3].map((k) => h!.send(`/outage/${w + k}`)));
      errors += replies.filter((r) => r.status === 503 && /connection_terminated/.test(String(r.headers['proxy-status']))).length;
    }
    const seen = h.origins.reduce((n, o) => n + o.count(), 0);
    const budget = h.pool().snapshot().retryBudget!;
    console.log(`retry budget in a total outage: ${N} client requests → ${seen} origin requests (without a budget: up to ${N * 3}); retries ${seen - N}, denied ${budget.denied}`);
    expect(errors).toBe(N);
    expect(seen).toBeGreaterThan(N); // some retries were allowed
    expect(seen).toBeLessThanOrEqual(N + 5 + N * 0.2);
    expect(budget.denied).toBeGreaterThan(0);
  });
});

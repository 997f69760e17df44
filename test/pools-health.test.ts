// Health: active probes (threshold, window, initial), all-sick reports, passive ejection with half-open
// return, slow start, fallback to standby, operator drain, panic mode.
import { afterEach, describe, expect, it } from 'vitest';
import { startPools, sleep, until, type PoolsHarness } from './pools-harness.ts';
import type { LogLine } from './helpers.ts';

let h: PoolsHarness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const NO_STORE = { '*': { kind: 'normal', cacheControl: 'no-store', bodySize: 64 } } as const;
const stateOf = (name: string, pool = 'default') => h!.pool(pool).snapshot().backends.find((b) => b.name === name)!.state;
const events = (backend: string): LogLine[] => h!.log.lines.filter((l) => l.type === 'backend' && l.backend === backend);
const poolOf = (urls: string[], extra: Record<string, unknown> = {}, names = urls.map((_, i) => `app${i + 1}`)) => ({
  backends: [],
  pools: [{ name: 'p', backends: urls.map((url, i) => ({ name: names[i]!, url })), ...extra }],
  routes: [{ pool: 'p' }],
});

describe('active probes', () => {
  it('threshold of window decides health; initial 0 starts sick until enough probes pass', async () => {
    h = await startPools({
      origins: [{ behaviours: NO_STORE }],
      // Panic mode off: this test is about what the probes decide (panic is tested below).
      config: (urls) => poolOf(urls, { probe: { enabled: true, path: '/health', interval: '40ms', timeout: '500ms', window: 5, threshold: 3, initial: 0 }, health: { panic_threshold: 0 } }),
    });
    // Sick at start: the first request finds no backend.
    const early = await h.send('/x');
    expect(early.status).toBe(503);
    expect(early.headers['proxy-status']).toMatch(/error=destination_unavailable/);
    expect(await until(() => stateOf('app1', 'p') === 'healthy', 2000)).toBe(true);
    const up = events('app1').find((l) => l.to === 'healthy')!;
    expect(up.reason).toMatch(/^probes HHH: 3\/5 passed, threshold 3/);
    expect((await h.send('/x')).status).toBe(200);

    // Now the health endpoint fails: with H H H H H in the window, the third failure makes it sick.
    h.origins[0]!.set('/health', { kind: 'error', status: 503 });
    expect(await until(() => stateOf('app1', 'p') === 'sick', 2000)).toBe(true);
    const down = events('app1').find((l) => l.to === 'sick')!;
    expect(down.reason).toMatch(/^probes HH---: 2\/5 passed, threshold 3; last error: status 503 \(expected 200\)/);
    // Probes never pile up: one per interval at most.
    const probes = h.origins[0]!.count('/health');
    await sleep(200);
    const rate = h.origins[0]!.count('/health') - probes;
    expect(rate).toBeGreaterThanOrEqual(1); // still probing (5 on an idle machine; timers slip on a loaded one)
    expect(rate).toBeLessThanOrEqual(6);
  });

  it('initial defaults to threshold: a backend starts healthy even before its first probe result', async () => {
    h = await startPools({
      origins: [{ behaviours: { ...NO_STORE, '/health': { kind: 'slow', firstByteMs: 300 } } }],
      config: (urls) => poolOf(urls, { probe: { enabled: true, path: '/health', interval: '1s', timeout: '1s', window: 4, threshold: 2 } }),
    });
    expect(stateOf('app1', 'p')).toBe('healthy');
    expect((await h.send('/y')).status).toBe(200);
    expect(h.pool('p').snapshot().backends[0]!.probeWindow).toBe(''); // no probe has answered yet
  });

  it('all backends sick → destination_unavailable with every backend’s probe history in the log', async () => {
    h = await startPools({
      origins: [{ behaviours: NO_STORE }, { behaviours: NO_STORE }],
      config: () => ({ probes: { enabled: true, path: '/health', interval: '40ms', timeout: '300ms', window: 4, threshold: 2 }, health: { panic_threshold: 0 } }),
    });
    await Promise.all(h.origins.map((o) => o.refuse()));
    expect(await until(() => stateOf('app1') === 'sick' && stateOf('app2') === 'sick', 2000)).toBe(true);
    const r = await h.send('/page', { headers: { accept: 'application/json' } });
    expect(r.status).toBe(503);
    expect(r.headers['retry-after']).toBe('5');
    expect(r.headers['proxy-status']).toBe('lacquer; error=destination_unavailable');
    const line = await h.log.forRequest(String(r.headers['x-request-id']));
    const err = line.error as { class: string; phase: string; context: { healthy: string; backends: Record<string, { state: string; probes: string; last_probe_error: string; probes_passed: string }> } };
    expect(err.class).toBe('destination_unavailable');
    expect(err.phase).toBe('choose');
    expect(err.context.healthy).toBe('0/2');
    for (const name of ['app1', 'app2']) {
      const b = err.context.backends[name]!;
      expect(b.state).toBe('sick');
      expect(b.probes).toMatch(/H*-{3,}$/);
      expect(b.last_probe_error).toBe('ECONNREFUSED');
      expect(b.probes_passed).toMatch(/^[01]\/4 \(threshold 2\)$/);
    }
    // No request reached the (refused) origins' listeners: nothing was tried.
    expect(line.attempts).toBeUndefined();
  });
});

describe('passive health', () => {
  it('ejects after consecutive failures, returns half-open with one trial request, and ejects longer on repeat', async () => {
    // Failures by status (a refused connection is decisive: see pools-resilience); on_status retries them elsewhere.
    h = await startPools({
      origins: [{ behaviours: NO_STORE }, { behaviours: NO_STORE }, { behaviours: NO_STORE }],
      config: () => ({ health: { consecutive_failures: 2, base_ejection: '400ms', max_ejection: '5s', slow_start: '0' }, retries: { on_status: [503] } }),
    });
    const fail = () => h!.origins[0]!.set('*', { kind: 'error', status: 503 });
    const recover = () => h!.origins[0]!.set('*', NO_STORE['*']);
    fail();
    let n = 0;
    while (stateOf('app1') !== 'ejected' && n < 20) expect((await h.send(`/a${n++}`)).status).toBe(200); // retried elsewhere
    expect(stateOf('app1')).toBe('ejected');
    const failedOnApp1 = h.log.access().filter((l) => ((l.attempts ?? []) as { backend: string }[]).some((a) => a.backend === 'app1')).length;
    expect(failedOnApp1).toBe(2);
    const ej1 = events('app1').find((l) => l.to === 'ejected')!;
    expect(ej1.reason).toMatch(/2 failures in a row; ejected for 400ms \(ejection #1\)/);

    // While ejected nothing goes to app1.
    for (let i = 0; i < 9; i++) await h.send(`/b${i}`);
    expect(h.log.access().filter((l) => ((l.attempts ?? []) as { backend: string }[]).some((a) => a.backend === 'app1')).length).toBe(2);

    // Back up; once the ejection ends the backend is half-open: exactly one trial, then full traffic.
    recover();
    expect(await until(() => stateOf('app1') === 'half-open', 1000)).toBe(true);
    const before = h.origins[0]!.count();
    for (let i = 0; i < 3; i++) await h.send(`/c${i}`);
    expect(h.origins[0]!.count() - before).toBe(1);
    expect(stateOf('app1')).toBe('healthy');
    expect(events('app1').at(-1)!.reason).toBe('trial request succeeded');
    for (let i = 0; i < 6; i++) await h.send(`/d${i}`);
    expect(h.origins[0]!.count() - before).toBeGreaterThanOrEqual(3);

    // Second ejection in a row lasts twice as long; a failed trial ejects it again, longer still.
    fail();
    for (let i = 0; i < 20 && stateOf('app1') !== 'ejected'; i++) await h.send(`/e${i}`);
    expect(events('app1').filter((l) => l.to === 'ejected').at(-1)!.reason).toMatch(/ejected for 800ms \(ejection #2\)/);
    expect(await until(() => stateOf('app1') === 'half-open', 1500)).toBe(true);
    for (let i = 0; i < 3; i++) expect((await h.send(`/f${i}`)).status).toBe(200);
    expect(stateOf('app1')).toBe('ejected');
    expect(events('app1').filter((l) => l.to === 'ejected').at(-1)!.reason).toMatch(/ejected for 1200ms \(ejection #3\)/);
    expect(h.pool().snapshot().backends[0]!.ejections).toBe(3);
  });
});

describe('slow start', () => {
  it('a backend that becomes healthy ramps its share over slow_start instead of taking a third at once', async () => {
    h = await startPools({
      origins: [{ behaviours: NO_STORE }, { behaviours: NO_STORE }, { behaviours: NO_STORE }],
      config: () => ({ health: { slow_start: '2s' } }),
    });
    const pool = h.pool();
    pool.setOverride('app1', 'sick');
    await h.send('/warm');
    pool.setOverride('app1', 'auto');
    const t0 = Date.now();
    const window = async (untilMs: number) => {
      const start = h!.origins.map((o) => o.count());
      const workers = Array.from({ length: 4 }, async (_, w) => {
        for (let i = 0; Date.now() - t0 < untilMs && i < 2000; i++) await h!.send(`/s/${w}/${i}`);
      });
      await Promise.all(workers);
      const got = h!.origins.map((o, i) => o.count() - start[i]!);
      return got[0]! / got.reduce((a, b) => a + b, 0);
    };
    const early = await window(400);
    const shareEarly = pool.snapshot().backends[0]!.share!;
    await sleep(2100 - (Date.now() - t0));
    const late = await window(2600);
    console.log(`slow start: app1 share of traffic ${(early * 100).toFixed(1)}% in the first 0.4 s (weight factor then ${shareEarly.toFixed(2)}), ${(late * 100).toFixed(1)}% after 2 s (full share 33.3%)`);
    expect(early).toBeLessThan(0.15);
    expect(late).toBeGreaterThan(0.28);
    expect(pool.snapshot().backends[0]!.share).toBe(1);
  });
});

describe('fallback director', () => {
  it('uses the standby only while the primary is sick', async () => {
    h = await startPools({
      origins: [{ behaviours: NO_STORE }, { behaviours: NO_STORE }],
      config: (urls) => poolOf(urls, { director: 'fallback', probe: { enabled: true, path: '/health', interval: '40ms', timeout: '300ms', window: 3, threshold: 2 } }, ['primary', 'standby']),
    });
    const [primary, standby] = h.origins as [typeof h.origins[0], typeof h.origins[0]];
    for (let i = 0; i < 10; i++) expect((await h.send(`/p${i}`)).status).toBe(200);
    expect(primary.count() - primary.count('/health')).toBe(10);
    expect(standby.count() - standby.count('/health')).toBe(0);

    await primary.refuse();
    expect(await until(() => stateOf('primary', 'p') === 'sick', 2000)).toBe(true);
    for (let i = 0; i < 10; i++) expect((await h.send(`/q${i}`)).status).toBe(200);
    expect(standby.count() - standby.count('/health')).toBe(10);

    await primary.resume();
    expect(await until(() => stateOf('primary', 'p') === 'healthy', 2000)).toBe(true);
    const standbyBefore = standby.count() - standby.count('/health');
    for (let i = 0; i < 10; i++) expect((await h.send(`/r${i}`)).status).toBe(200);
    expect(standby.count() - standby.count('/health')).toBe(standbyBefore);
  });
});

describe('operator override', () => {
  it('drain: no new requests, the one in flight finishes; unknown backends are refused', async () => {
    const slow = { ...NO_STORE, '/slow': { kind: 'slow', firstByteMs: 500, then: { cacheControl: 'no-store' } } } as const;
    // No slow start: back from drain, app1 takes its full share at once (the ramp is tested above).
    h = await startPools({ origins: [{ behaviours: slow }, { behaviours: slow }, { behaviours: slow }], config: () => ({ health: { slow_start: '0' } }) });
    const pool = h.pool();
    const inflight = h.send('/slow'); // first pick of a fresh round robin: app1
    expect(await until(() => h!.origins[0]!.count('/slow') === 1, 1000)).toBe(true);
    const snap = pool.setOverride('app1', 'drain')!;
    expect(snap.state).toBe('draining');
    expect(snap.inflight).toBe(1);
    for (let i = 0; i < 9; i++) expect((await h.send(`/n${i}`)).status).toBe(200);
    expect(h.origins[0]!.count()).toBe(1);
    const done = await inflight;
    expect(done.status).toBe(200);
    expect(pool.snapshot().backends[0]!.inflight).toBe(0);
    pool.setOverride('app1', 'auto');
    for (let i = 0; i < 6; i++) await h.send(`/m${i}`);
    expect(h.origins[0]!.count()).toBeGreaterThan(1);
    expect(pool.setOverride('nope', 'drain')).toBeUndefined();
    expect(events('app1').map((l) => `${l.from}→${l.to}`)).toEqual(['healthy→draining', 'draining→healthy']);
  });

  it('sick and healthy override the probes', async () => {
    h = await startPools({
      origins: [{ behaviours: { ...NO_STORE, '/health': { kind: 'error', status: 500 } } }],
      config: () => ({ probes: { enabled: true, path: '/health', interval: '40ms', timeout: '300ms', window: 2, threshold: 1 }, health: { panic_threshold: 0 } }),
    });
    expect(await until(() => stateOf('app1') === 'sick', 2000)).toBe(true);
    expect((await h.send('/z')).status).toBe(503);
    h.pool().setOverride('app1', 'healthy');
    expect((await h.send('/z')).status).toBe(200);
    h.pool().setOverride('app1', 'sick');
    expect((await h.send('/z')).headers['proxy-status']).toMatch(/destination_unavailable/);
  });
});

describe('panic mode', () => {
  it('with fewer than panic_threshold healthy, chooses among all backends and says so loudly', async () => {
    const sickProbe = { ...NO_STORE, '/health': { kind: 'error', status: 503 } } as const;
    h = await startPools({
      origins: [{ behaviours: sickProbe }, { behaviours: sickProbe }, { behaviours: NO_STORE }],
      config: () => ({ probes: { enabled: true, path: '/health', interval: '40ms', timeout: '300ms', window: 2, threshold: 1 }, health: { panic_threshold: 0.5 } }),
    });
    expect(await until(() => stateOf('app1') === 'sick' && stateOf('app2') === 'sick', 2000)).toBe(true);
    const before = h.origins.map((o) => o.count() - o.count('/health'));
    for (let i = 0; i < 9; i++) expect((await h.send(`/p${i}`)).status).toBe(200);
    const got = h.origins.map((o, i) => o.count() - o.count('/health') - before[i]!);
    expect(got[0]).toBeGreaterThan(0); // a sick backend took traffic: that is panic mode
    expect(got[1]).toBeGreaterThan(0);
    expect(h.pool().snapshot()).toMatchObject({ panic: true, healthy: 1, total: 3 });
    const loud = h.log.lines.find((l) => l.type === 'pool' && l.event === 'panic')!;
    expect(loud.level).toBe('error');
    expect(String(loud.msg)).toMatch(/PANIC mode: only 1\/3 backends healthy/);
    // Health restored: panic is over.
    for (const o of h.origins) o.set('/health', { kind: 'normal' });
    expect(await until(() => h!.pool().snapshot().healthy === 3, 2000)).toBe(true);
    await h.send('/after');
    expect(h.pool().snapshot().panic).toBe(false);
    expect(h.log.lines.some((l) => l.type === 'pool' && l.event === 'panic-over')).toBe(true);
  });
});

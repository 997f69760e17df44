// Issue 9, part A: faults Lacquer must absorb with the shipped defaults instead of turning them into
// outages — a sole backend with some failing URLs, a stalled body, a rolling restart of every backend under
// load, a black-holed backend; and panic mode (on by default) when every backend fails its probes.
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { healthContext } from '../src/upstream/lifecycle.ts';
import { startPools, sleep, type PoolsHarness } from './pools-harness.ts';
import type { LogLine } from './helpers.ts';

let h: PoolsHarness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const NO_STORE = { '*': { kind: 'normal', cacheControl: 'no-store', bodySize: 256 } } as const;
type AttemptLine = { backend: string; outcome: string; retry?: string };
const attemptsOf = (l: LogLine) => (l.attempts ?? []) as AttemptLine[];

/** Retries by reason and refusals by reason, from the access log: the figures the issue asks for. */
function retryFigures(lines: LogLine[]): { retries: Record<string, number>; refused: Record<string, number> } {
  const retries: Record<string, number> = {};
  const refused: Record<string, number> = {};
  for (const l of lines) {
    for (const a of attemptsOf(l)) if (a.retry) retries[a.retry] = (retries[a.retry] ?? 0) + 1;
    if (typeof l.retry_refused === 'string') refused[l.retry_refused] = (refused[l.retry_refused] ?? 0) + 1;
  }
  return { retries, refused };
}

type Result = { at: number; status: number; path: string };

/**
 * Open-loop load: `rps` requests a second for `ms` (launched on schedule whether or not earlier ones
 * finished, like real traffic), each to a new uncacheable path. Bounded in count and in time.
 */
async function steadyLoad(send: (p: string) => Promise<{ status: number }>, rps: number, ms: number, t0: number): Promise<Result[]> {
  const total = Math.round((rps * ms) / 1000);
  const results: Result[] = [];
  const pending: Promise<void>[] = [];
  let launched = 0;
  while (launched < total && Date.now() - t0 < ms + 2000) {
    const due = Math.min(total, Math.floor(((Date.now() - t0) * rps) / 1000) + 1);
    for (; launched < due; launched++) {
      const path = `/load/${launched}`;
      const at = Date.now() - t0;
      pending.push(
        send(path).then(
          (r) => void results.push({ at, status: r.status, path }),
          () => void results.push({ at, status: 0, path }),
        ),
      );
    }
    await sleep(5);
  }
  await Promise.all(pending);
  return results;
}

describe('a sole backend is never ejected', () => {
  it('answering 503 on /bad 20 times in a row: /good is still forwarded and answered 200 every time; /api/backends shows the failures', async () => {
    h = await startPools({ origins: [{ behaviours: { ...NO_STORE, '/bad': { kind: 'error', status: 503 } } }] });
    const good: number[] = [];
    for (let i = 0; i < 20; i++) expect((await h.send('/bad')).status).toBe(503);
    // The health context every failure report carries says why a backend failing this much still takes traffic.
    expect(healthContext(h.proxy.ctx.pools, 'app1')).toMatchObject({ state: 'healthy', healthy: '1/1', circuit: 'closed', ejection_refused: 'last-capacity' });
    for (let i = 0; i < 10; i++) good.push((await h.send(`/good?${i}`)).status);
    // Interleaved too: the failures never add up to an outage of the other URLs.
    for (let i = 0; i < 10; i++) {
      await h.send('/bad');
      good.push((await h.send(`/good?x${i}`)).status);
    }
    expect(good).toEqual(new Array<number>(20).fill(200));
    expect(h.origins[0]!.count('/good')).toBe(20);
    const res = await request(`${h.proxy.plane.admin!.url}/api/backends`);
    const body = (await res.body.json()) as { pools: { backends: { name: string; state: string; ejections: number; passive: Record<string, unknown> }[] }[] };
    const app1 = body.pools[0]!.backends[0]!;
    console.log(`sole backend, 30 × 503 on /bad: /good ${good.filter((s) => s === 200).length}/20 answered 200; /api/backends passive=${JSON.stringify(app1.passive)}`);
    expect(app1).toMatchObject({ name: 'app1', state: 'healthy', ejections: 0 });
    expect(app1.passive).toMatchObject({ failures: 30, ejection_refused_why: 'last-capacity' });
    expect(app1.passive.ejections_refused).toBeGreaterThan(0);
    // The refusal to eject is in the operational log, once per run of failures.
    const kept = h.log.lines.filter((l) => l.type === 'backend' && l.event === 'eject-refused');
    expect(kept).toHaveLength(1);
    expect(String(kept[0]!.msg)).toMatch(/app1: 5 failures in a row, kept in rotation: no other backend is healthy \(1\/1\)/);
  });

  it('stalling one body past between_bytes: that request is aborted, nothing is cached, the next requests for other URLs succeed', async () => {
    h = await startPools({
      origins: [{ behaviours: { '*': { kind: 'normal', cacheControl: 'max-age=60', bodySize: 256 }, '/stall': { kind: 'stall', afterBytes: 100, then: { cacheControl: 'max-age=60', bodySize: 10_000 } } } }],
      config: () => ({ timeouts: { between_bytes: '200ms' } }),
    });
    // Six stalls: more than consecutive_failures, so an ejectable backend would be out.
    for (let i = 0; i < 6; i++) await expect(h.send('/stall')).rejects.toThrow();
    expect(h.origins[0]!.count('/stall')).toBe(6); // never served from cache: nothing was stored
    expect(h.pool().snapshot().backends[0]).toMatchObject({ state: 'healthy', ejections: 0, consecutiveFailures: 6, ejectionRefusedWhy: 'last-capacity' });
    const statuses: number[] = [];
    for (let i = 0; i < 20; i++) statuses.push((await h.send(`/other/${i}`)).status);
    expect(statuses).toEqual(new Array<number>(20).fill(200));
    const stalled = h.log.access().filter((l) => l.url === '/stall');
    expect(stalled.map((l) => (l.error as { class: string } | undefined)?.class)).toEqual(new Array<string>(6).fill('connection_read_timeout'));
  });
});

describe('rolling restart', () => {
  it('three backends each refusing connections for 3 s in turn under 200 req/s of uncacheable GETs: zero client errors', async () => {
    h = await startPools({ origins: [{ behaviours: NO_STORE }, { behaviours: NO_STORE }, { behaviours: NO_STORE }] });
    const t0 = Date.now();
    const load = steadyLoad((p) => h!.send(p), 200, 11_000, t0);
    const restart = async () => {
      await sleep(1000);
      for (const o of h!.origins) {
        await o.refuse();
        await sleep(3000);
        await o.resume();
      }
    };
    await restart();
    const results = await load;
    // The last one resumed ~1 s before the load ended: give it time for its trial connect and trial request
    // on a loaded machine (a half-open backend needs a request to prove itself).
    for (let i = 0; i < 60 && !h.pool().snapshot().backends.every((b) => b.state === 'healthy'); i++) {
      await h.send(`/settle/${i}`);
      await sleep(50);
    }
    const errors = results.filter((r) => r.status !== 200);
    const lines = h.log.access();
    const f = retryFigures(lines);
    const refusals = lines.filter((l) => attemptsOf(l).some((a) => a.outcome === 'connection_refused')).length;
    const snap = h.pool().snapshot();
    console.log(
      `rolling restart: ${results.length} requests at 200/s, ${errors.length} client errors, ${refusals} met a refusal; retries ${JSON.stringify(f.retries)}, refused ${JSON.stringify(f.refused)}; budget ${JSON.stringify(snap.retryBudget)}; ejections ${snap.backends.map((b) => `${b.name}=${b.ejections}`).join(' ')}`,
    );
    for (const l of lines.filter((x) => x.status !== 200)) console.log(JSON.stringify(l));
    for (const l of h.log.lines.filter((x) => x.type === 'backend')) console.log(`  ${String(l.backend)}: ${String(l.from)}→${String(l.to)} (${String(l.reason)})`);
    expect(results.length).toBe(2200);
    expect(errors).toEqual([]);
    // Every backend was refused under load and taken out at once, and each came back (trial connect, half-open).
    expect(snap.backends.map((b) => b.ejections)).toEqual([1, 1, 1]);
    expect(snap.backends.every((b) => b.state === 'healthy')).toBe(true);
    expect(f.retries.connect ?? 0).toBeGreaterThan(0);
    for (const name of ['app1', 'app2', 'app3']) {
      const back = h.log.lines.filter((l) => l.type === 'backend' && l.backend === name).map((l) => `${l.from}→${l.to}`);
      expect(back).toEqual(['healthy→ejected', 'ejected→half-open', 'half-open→healthy']);
    }
    // Retries after a refusal added no origin load: none of them took from the budget.
    expect(snap.retryBudget!.free).toBeGreaterThanOrEqual(f.retries.connect ?? 0);
  }, 30_000);
});

describe('black hole', () => {
  it('a backend that accepts and never answers, among three: a handful of errors before the first first_byte, none after', async () => {
    const firstByte = 400;
    h = await startPools({
      origins: [{ behaviours: NO_STORE }, { behaviours: NO_STORE }, { behaviours: NO_STORE }],
      config: () => ({ timeouts: { first_byte: `${firstByte}ms` }, health: { base_ejection: '1s' } }),
    });
    const workers = 6;
    const t0 = Date.now();
    let holeAt = Infinity;
    const results: Result[] = [];
    const worker = async (w: number) => {
      for (let i = 0; Date.now() - t0 < 5000 && i < 3000; i++) {
        const at = Date.now() - t0;
        const r = await h!.send(`/bh/${w}/${i}`);
        results.push({ at, status: r.status, path: `/bh/${w}/${i}` });
      }
    };
    const load = Promise.all(Array.from({ length: workers }, (_, w) => worker(w)));
    await sleep(500);
    h.origins[1]!.set('*', { kind: 'hang' });
    holeAt = Date.now() - t0;
    await load;
    const errors = results.filter((r) => r.status !== 200);
    const late = errors.filter((r) => r.at > holeAt + firstByte);
    const f = retryFigures(h.log.access());
    const snap = h.pool().snapshot().backends[1]!;
    console.log(
      `black hole: ${results.length} requests, ${errors.length} client errors (${late.length} sent after the first first_byte), app2 ejected ${snap.ejections}×; retries ${JSON.stringify(f.retries)}, refused ${JSON.stringify(f.refused)}`,
    );
    expect(results.length).toBeGreaterThan(300);
    expect(errors.length).toBeLessThanOrEqual(workers);
    expect(late).toEqual([]);
    // After its first timeout app2 is a suspect: the next timeouts on it are retried elsewhere (budgeted).
    expect(f.retries.timeout ?? 0).toBeGreaterThan(0);
    // The ejection ended at least once during the run: its half-open trial met the hole, and (no late
    // errors) its client was answered elsewhere.
    expect(snap.ejections).toBeGreaterThanOrEqual(2);
  }, 20_000);
});

describe('panic mode by default', () => {
  it('every backend fails its probes while the origins answer: requests are still forwarded, not destination_unavailable', async () => {
    const sickProbe = { ...NO_STORE, '/health': { kind: 'error', status: 503 } } as const;
    h = await startPools({
      origins: [{ behaviours: sickProbe }, { behaviours: sickProbe }],
      config: () => ({ probes: { enabled: true, path: '/health', interval: '40ms', timeout: '300ms', window: 2, threshold: 1 } }),
    });
    const { until } = await import('./pools-harness.ts');
    expect(await until(() => h!.pool().snapshot().healthy === 0, 2000)).toBe(true);
    for (let i = 0; i < 6; i++) expect((await h.send(`/p${i}`)).status).toBe(200);
    expect(h.pool().snapshot().panic).toBe(true);
    // The operator's sick still wins.
    h.pool().setOverride('app1', 'sick');
    h.pool().setOverride('app2', 'sick');
    expect((await h.send('/q')).headers['proxy-status']).toMatch(/destination_unavailable/);
  });
});

describe('why a failed attempt was not retried', () => {
  it('retry_refused in the access line, the failure report (/api/failures) and lacquer_retries_refused_total', async () => {
    const reset = { '/submit': { kind: 'reset-before-headers' }, '/get': { kind: 'reset-before-headers' } } as const;
    h = await startPools({
      origins: [{ behaviours: { ...NO_STORE, ...reset } }, { behaviours: NO_STORE }],
      // No budget at all: a retry that adds load is refused by it, one that adds none is not.
      config: (urls) => ({
        backends: [],
        pools: [{ name: 'p', director: 'fallback', backends: urls.map((url, i) => ({ name: `app${i + 1}`, url })), retries: { budget: { percent: 0, min: 0 } } }],
        routes: [{ pool: 'p' }],
      }),
    });
    const post = await h.send('/submit', { method: 'POST', body: 'x=1', headers: { 'x-request-id': 'post-1' } });
    expect(post.status).toBe(503);
    // A fresh connection reset after the GET was sent may have put work on the origin: the empty budget refuses.
    const get = await h.send('/get', { headers: { 'x-request-id': 'get-1' } });
    expect(get.status).toBe(503);
    // A refused connection sent nothing: retried on app2 despite the empty budget.
    await h.origins[0]!.refuse();
    const refused = await h.send('/free', { headers: { 'x-request-id': 'free-1' } });
    expect(refused.status).toBe(200);
    expect((await h.log.forRequest('post-1')).retry_refused).toBe('not-idempotent');
    expect((await h.log.forRequest('get-1')).retry_refused).toBe('budget');
    const free = await h.log.forRequest('free-1');
    expect(free.retry_refused).toBeUndefined();
    expect(free.attempts).toMatchObject([{ backend: 'app1', outcome: 'connection_refused' }, { backend: 'app2', outcome: 'ok', retry: 'connect' }]);
    const admin = h.proxy.plane.admin!.url;
    const failures = (await (await request(`${admin}/api/failures`)).body.json()) as { failures: { id: string; retry_refused?: string }[] };
    expect(Object.fromEntries(failures.failures.map((f) => [f.id, f.retry_refused]))).toMatchObject({ 'post-1': 'not-idempotent', 'get-1': 'budget' });
    const metrics = await (await request(`${admin}/metrics`)).body.text();
    expect(metrics).toMatch(/lacquer_retries_refused_total\{reason="not-idempotent"\} 1/);
    expect(metrics).toMatch(/lacquer_retries_refused_total\{reason="budget"\} 1/);
    expect(metrics).toMatch(/lacquer_retries_total\{reason="connect"\} 1/);
    const pools = (await (await request(`${admin}/api/backends`)).body.json()) as { pools: { name: string; retry_budget: Record<string, number> }[] };
    expect(pools.pools.find((p) => p.name === 'p')!.retry_budget).toMatchObject({ denied: 1, free: 1 });
  });
});

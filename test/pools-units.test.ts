// Units of the pools issue without sockets: directors, the retry decision, the retry budget, the slot
// gate, the probe window and outlier ejection.
import { afterAll, describe, expect, it } from 'vitest';
import { TIMEOUT_DEFAULTS } from '../src/config/schema.ts';
import { ProxyError } from '../src/errors.ts';
import { addedNoOriginLoad, decideRetry, type RetryInput } from '../src/pipeline/retry.ts';
import { Backend } from '../src/upstream/backend.ts';
import { RetryBudget } from '../src/upstream/budget.ts';
import { createDirector } from '../src/upstream/directors/director.ts';
import { Gate } from '../src/upstream/gate.ts';
import { Outlier } from '../src/upstream/health/outlier.ts';
import { ProbeWindow } from '../src/upstream/health/probe.ts';
import { trialConnect } from '../src/upstream/health/trial.ts';
import { sectionDefaults } from '../src/upstream/defaults.ts';
import { BackendPool, type PoolEvent } from '../src/upstream/pool.ts';
import type { HealthConfig } from '../src/config/schema.ts';
import { until } from './pools-harness.ts';

const made: Backend[] = [];
function backends(n: number, weights: number[] = []): Backend[] {
  const list = Array.from({ length: n }, (_, i) => new Backend({ name: `b${i + 1}`, url: `http://127.0.0.1:${10_001 + i}`, weight: weights[i] ?? 1 }, { timeouts: { ...TIMEOUT_DEFAULTS }, responseHeaderSize: 65_536 }));
  made.push(...list);
  return list;
}
afterAll(() => {
  for (const b of made) b.destroy();
});

function share(picks: Backend[], all: Backend[]): number[] {
  return all.map((b) => picks.filter((p) => p === b).length / picks.length);
}

describe('directors', () => {
  it('round_robin is smooth and weighted (5:1:1 interleaves, does not burst)', () => {
    const bs = backends(3, [5, 1, 1]);
    const d = createDirector('round_robin');
    const picks = Array.from({ length: 7 }, () => d.pick({ candidates: bs, weights: [5, 1, 1], key: undefined }));
    expect(picks.map((b) => b.name).join(' ')).toBe('b1 b1 b2 b1 b3 b1 b1');
  });

  it('random follows the weights', () => {
    const bs = backends(3);
    const d = createDirector('random');
    const picks = Array.from({ length: 6000 }, () => d.pick({ candidates: bs, weights: [4, 1, 1], key: undefined }));
    const s = share(picks, bs);
    expect(s[0]).toBeGreaterThan(0.6);
    expect(s[0]).toBeLessThan(0.73);
    expect(Math.abs(s[1]! - s[2]!)).toBeLessThan(0.05);
  });

  it('least_connections picks the lowest load per weight', async () => {
    const bs = backends(3, [1, 2, 1]);
    const d = createDirector('least_connections');
    // b1 holds 2 slots, b2 (weight 2) holds 3, b3 holds 1: scores 3, 2, 2 → b2 or b3; with one more on b3 → b2.
    const held = [];
    for (const [b, n] of [[bs[0]!, 2], [bs[1]!, 3], [bs[2]!, 2]] as const) for (let i = 0; i < n; i++) held.push(b.slots.acquire(1000));
    const picks = new Set(Array.from({ length: 50 }, () => d.pick({ candidates: bs, weights: [1, 2, 1], key: undefined }).name));
    expect([...picks]).toEqual(['b2']);
    for (const g of await Promise.all(held)) if (g.kind === 'ok') g.release();
  });

  it('fallback takes the first candidate', () => {
    const bs = backends(3);
    expect(createDirector('fallback').pick({ candidates: bs.slice(1), weights: [1, 1], key: undefined }).name).toBe('b2');
  });

  it('hash: a key stays put, keys spread evenly, and when one of five leaves only its keys move (≈1/5)', () => {
    const bs = backends(5);
    const d = createDirector('hash');
    const keys = Array.from({ length: 10_000 }, (_, i) => `example.com/item/${i}?v=${i * 7}`);
    const w5 = [1, 1, 1, 1, 1];
    const before = keys.map((key) => d.pick({ candidates: bs, weights: w5, key }));
    expect(keys.slice(0, 100).every((key, i) => d.pick({ candidates: bs, weights: w5, key }) === before[i])).toBe(true);
    for (const s of share(before, bs)) expect(Math.abs(s - 0.2)).toBeLessThan(0.02);
    const gone = bs[2]!;
    const rest = bs.filter((b) => b !== gone);
    const after = keys.map((key) => d.pick({ candidates: rest, weights: [1, 1, 1, 1], key }));
    const moved = keys.filter((_, i) => after[i] !== before[i]).length;
    const movedFromOthers = keys.filter((_, i) => before[i] !== gone && after[i] !== before[i]).length;
    const fraction = moved / keys.length;
    console.log(`hash reshuffle when 1 of 5 backends leaves: ${(fraction * 100).toFixed(2)}% of 10000 keys moved (ideal 20%); keys moved that were not on the leaving backend: ${movedFromOthers}`);
    expect(movedFromOthers).toBe(0);
    expect(fraction).toBeGreaterThan(0.17);
    expect(fraction).toBeLessThan(0.23);
  });

  it('hash honours weights', () => {
    const bs = backends(2);
    const d = createDirector('hash');
    const picks = Array.from({ length: 6000 }, (_, i) => d.pick({ candidates: bs, weights: [3, 1], key: `/k${i}` }));
    const s = share(picks, bs);
    expect(s[0]).toBeGreaterThan(0.7);
    expect(s[0]).toBeLessThan(0.8);
  });
});

const base: RetryInput = {
  error: undefined,
  method: 'GET',
  replayable: true,
  responseStarted: false,
  attempts: 1,
  policy: { ...sectionDefaults().retries },
  elapsedMs: 10,
  otherBackend: true,
  staleKeepaliveRetried: false,
  budgetAvailable: true,
};
const refused = new ProxyError({ type: 'connection_refused', phase: 'connect', backend: 'b1' });
const terminated = (reused: boolean | undefined) => new ProxyError({ type: 'connection_terminated', phase: 'wait_headers', backend: 'b1', reused });
const timeout = new ProxyError({ type: 'http_response_timeout', phase: 'wait_headers', backend: 'b1' });

describe('the retry decision', () => {
  it('retries a connect failure for any method, on another backend only', () => {
    expect(decideRetry({ ...base, method: 'POST', replayable: false, error: refused })).toEqual({ retry: true, reason: 'connect', fresh: false, free: true });
    expect(decideRetry({ ...base, error: refused, otherBackend: false })).toEqual({ retry: false, why: 'no-other-backend' });
  });

  it('never retries a sent POST, nor a request whose body cannot be replayed', () => {
    expect(decideRetry({ ...base, method: 'POST', error: terminated(false) })).toEqual({ retry: false, why: 'not-idempotent' });
    expect(decideRetry({ ...base, method: 'POST', error: terminated(true) })).toEqual({ retry: false, why: 'not-idempotent' });
    expect(decideRetry({ ...base, method: 'PUT', replayable: false, error: terminated(false) })).toEqual({ retry: false, why: 'not-replayable' });
    expect(decideRetry({ ...base, method: 'PUT', error: terminated(false) })).toMatchObject({ retry: true, reason: 'terminated' });
  });

  it('retries the keep-alive race once on a fresh connection, then only elsewhere', () => {
    expect(decideRetry({ ...base, error: terminated(true), otherBackend: false })).toEqual({ retry: true, reason: 'stale-keepalive', fresh: true, free: true });
    expect(decideRetry({ ...base, error: terminated(true), otherBackend: false, staleKeepaliveRetried: true })).toEqual({ retry: false, why: 'no-other-backend' });
    // A fresh socket closed under the request is not the race: another backend, not a fresh connection.
    expect(decideRetry({ ...base, error: terminated(false) })).toMatchObject({ reason: 'terminated', fresh: false });
  });

  it('retries timeouts and statuses only when configured', () => {
    expect(decideRetry({ ...base, error: timeout })).toEqual({ retry: false, why: 'not-retryable' });
    // ...or when the backend is failing in a row (a black hole): the timeout is the backend's.
    expect(decideRetry({ ...base, error: timeout, backendFailing: true })).toEqual({ retry: true, reason: 'timeout', fresh: false, free: false });
    expect(decideRetry({ ...base, error: timeout, backendFailing: true, budgetAvailable: false })).toEqual({ retry: false, why: 'budget' });
    expect(decideRetry({ ...base, error: timeout, policy: { ...base.policy, on_timeout: true } })).toMatchObject({ retry: true, reason: 'timeout' });
    expect(decideRetry({ ...base, status: 503 })).toEqual({ retry: false, why: 'not-retryable' });
    expect(decideRetry({ ...base, status: 503, policy: { ...base.policy, on_status: [503] } })).toMatchObject({ retry: true, reason: 'status' });
  });

  it('is bounded: response started, max, deadline, budget', () => {
    expect(decideRetry({ ...base, error: refused, responseStarted: true })).toEqual({ retry: false, why: 'response-started' });
    expect(decideRetry({ ...base, error: refused, attempts: 3 })).toEqual({ retry: false, why: 'max' });
    expect(decideRetry({ ...base, error: refused, elapsedMs: 30_000 })).toEqual({ retry: false, why: 'deadline' });
    expect(decideRetry({ ...base, error: terminated(false), budgetAvailable: false })).toEqual({ retry: false, why: 'budget' });
  });
});

describe('retry budget', () => {
  it('allows min + percent of requests per window, and forgets old traffic', () => {
    const b = new RetryBudget({ percent: 20, min: 3, windowMs: 1000 });
    const t = 1_000_000;
    for (let i = 0; i < 100; i++) b.request(t);
    let granted = 0;
    for (let i = 0; i < 100; i++) if (b.tryRetry(t + 10)) granted++;
    expect(granted).toBe(23);
    expect(b.denied).toBe(77);
    // A window later the old requests and retries are gone: only the minimum is left.
    let later = 0;
    for (let i = 0; i < 10; i++) if (b.tryRetry(t + 1200)) later++;
    expect(later).toBe(3);
  });
});

describe('gate', () => {
  it('caps holders, queues in order up to its bound, times out waiters, and lets a leaving client go', async () => {
    const g = new Gate(1, 2);
    const first = await g.acquire(100);
    expect(first.kind).toBe('ok');
    let leave: (() => void) | undefined;
    const w1 = g.acquire(1000);
    const w2 = g.acquire(1000, (cb) => {
      leave = cb;
      return () => undefined;
    });
    expect(g.acquire(1000)).toEqual({ kind: 'full' });
    expect(g.queued).toBe(2);
    leave!();
    expect(await w2).toEqual({ kind: 'gone' });
    expect(g.queued).toBe(1);
    if (first.kind === 'ok') first.release();
    const got = await w1;
    expect(got.kind).toBe('ok');
    const w3 = await g.acquire(30);
    expect(w3.kind).toBe('timeout');
    if (got.kind === 'ok') got.release();
    expect(g.active).toBe(0);
  });
});

describe('probe window (Varnish semantics)', () => {
  it('healthy when at least threshold of the last window passed; initial counts as passes at start', () => {
    const w = new ProbeWindow({ window: 5, threshold: 3, initial: 2 });
    expect(w.healthy).toBe(false); // 2 assumed passes < 3
    w.record({ ok: true, at: 0, ms: 1 });
    expect(w.healthy).toBe(true);
    for (let i = 0; i < 3; i++) w.record({ ok: false, at: 0, ms: 1, error: 'ECONNREFUSED' });
    // 2 assumed + H - - - is six results; the window keeps the last five: H H - - - → 2 passes.
    expect(w.passed).toBe(2);
    expect(w.healthy).toBe(false);
    expect(w.pattern).toBe('H---');
    expect(w.lastError).toBe('ECONNREFUSED');
  });
});

describe('outlier ejection', () => {
  const allow = () => undefined;
  it('ejects after consecutive failures, for longer each time; half-open on expiry', () => {
    const o = new Outlier({ ...sectionDefaults().health, consecutive_failures: 3, base_ejection: 100, max_ejection: 250 });
    const t = 1_000_000;
    expect(o.failure(t, allow).kind).toBe('counted');
    expect(o.failure(t, allow).kind).toBe('counted');
    expect(o.failure(t, allow).kind).toBe('ejected');
    expect(o.phase(t + 50)).toBe('ejected');
    expect(o.phase(t + 100)).toBe('half-open');
    expect(o.failure(t + 100, allow).kind).toBe('ejected'); // failed trial: out again, 2 × base
    expect(o.ejectedUntil).toBe(t + 300);
    expect(o.success(t + 300)).toBe(true);
    expect(o.phase(t + 300)).toBe('in');
    for (let i = 0; i < 3; i++) o.failure(t + 301, allow);
    expect(o.ejectedUntil - (t + 301)).toBe(250); // 3 × base capped at max_ejection
  });

  it('a refused connection is decisive: out at the first one; reopen makes it half-open', () => {
    const o = new Outlier({ ...sectionDefaults().health, consecutive_failures: 5 });
    expect(o.failure(1000, allow, true).kind).toBe('ejected');
    expect(o.cause).toBe('refused');
    expect(o.phase(1001)).toBe('ejected');
    o.reopen(1500);
    expect(o.phase(1500)).toBe('half-open');
  });

  it('max_ejection_percent: with 50% of 4, the third failing backend stays in', () => {
    const bs = backends(4);
    const pool = new BackendPool('p', bs, { director: 'round_robin', hashKey: 'url', zone: undefined, ...sectionDefaults(), health: { ...sectionDefaults().health, consecutive_failures: 1, max_ejection_percent: 50 } });
    for (const b of bs.slice(0, 3)) pool.report(b, 'failure');
    expect(pool.snapshot().backends.map((b) => b.state)).toEqual(['ejected', 'ejected', 'healthy', 'healthy']);
    expect(pool.snapshot().backends[2]).toMatchObject({ ejectionsRefused: 1, ejectionRefusedWhy: 'max-ejection-percent' });
  });
});

/** A pool on a clock the test moves (issue 11 item 19: time-dependent behaviour without sleeping). */
function clocked(n: number, health: Partial<HealthConfig> = {}, opts: { trialConnect?: (b: Backend) => Promise<boolean>; probe?: boolean } = {}) {
  const clock = { t: 1_000_000 };
  const d = sectionDefaults();
  const bs = backends(n);
  const events: PoolEvent[] = [];
  const pool = new BackendPool(
    'p',
    bs,
    { director: 'round_robin', hashKey: 'url', zone: undefined, ...d, health: { ...d.health, ...health }, probe: { ...d.probe, enabled: opts.probe ?? false, window: 2, threshold: 1 } },
    { now: () => clock.t, trialConnect: opts.trialConnect ?? (() => Promise.resolve(false)) },
  );
  pool.onEvent = (e) => events.push(e);
  made.push(...bs);
  return { clock, bs, pool, events };
}

describe('ejection never removes the last capacity', () => {
  it('a pool of one is never ejected: 20 failures are counted, reported once as kept, and it still takes requests', () => {
    const { bs, pool, events, clock } = clocked(1);
    for (let i = 0; i < 20; i++) {
      pool.report(bs[0]!, 'failure', i % 2 ? 'connection_terminated' : undefined);
      clock.t += 100;
    }
    pool.report(bs[0]!, 'failure', 'connection_refused'); // decisive, but still the last capacity
    const snap = pool.snapshot().backends[0]!;
    expect(snap).toMatchObject({ state: 'healthy', ejections: 0, consecutiveFailures: 21, failures: 21, ejectionRefusedWhy: 'last-capacity' });
    expect(snap.ejectionsRefused).toBe(17); // from the 5th failure on, each one wanted it out
    expect(pool.choose()).toBe(bs[0]);
    expect(events.filter((e) => e.kind === 'eject-refused')).toEqual([{ kind: 'eject-refused', pool: 'p', backend: 'b1', why: 'last-capacity', failures: 5, healthy: 1, total: 1 }]);
    // A new run of failures is warned about again, but not more than once per base_ejection (10 s).
    const run = () => {
      pool.report(bs[0]!, 'success');
      for (let i = 0; i < 5; i++) pool.report(bs[0]!, 'failure');
    };
    clock.t += 5000;
    run();
    expect(events.filter((e) => e.kind === 'eject-refused')).toHaveLength(1);
    clock.t += 5000;
    run();
    expect(events.filter((e) => e.kind === 'eject-refused')).toHaveLength(2);
  });

  it('two backends failing together: one is ejected, the other carries the pool; all ejected never happens', () => {
    const { bs, pool, clock } = clocked(2, { consecutive_failures: 2, base_ejection: 10_000 });
    for (let i = 0; i < 10; i++) for (const b of bs) pool.report(b, 'failure');
    expect(pool.snapshot().backends.map((b) => b.state)).toEqual(['ejected', 'healthy']);
    expect(pool.choose()).toBe(bs[1]);
    // Time passes (no sleep): the ejection ends, b1 is half-open and gets exactly one trial.
    clock.t += 10_000;
    expect(pool.snapshot().backends[0]!.state).toBe('half-open');
    const picks = [pool.choose(), pool.choose(), pool.choose()];
    expect(picks.filter((b) => b === bs[0])).toHaveLength(1);
    pool.report(bs[0]!, 'success');
    expect(pool.snapshot().backends[0]!.state).toBe('healthy');
  });
});

describe('a refused connection is decisive', () => {
  it('takes the backend out at once, a trial connect makes it half-open, a trial request brings it back with slow start', async () => {
    let listening = false;
    const trials: string[] = [];
    const { bs, pool, events, clock } = clocked(3, { trial_connect_interval: 1, slow_start: 10_000 }, {
      trialConnect: (b) => {
        trials.push(b.name);
        return Promise.resolve(listening);
      },
    });
    pool.report(bs[1]!, 'failure', 'connection_refused');
    expect(pool.snapshot().backends[1]).toMatchObject({ state: 'ejected', ejectionCause: 'refused' });
    expect(String((events[0] as { reason: string }).reason)).toMatch(/^connection refused; out until a trial connect succeeds/);
    // Trial connects fail while nothing listens; the backend stays out.
    await until(() => trials.length >= 3, 1000);
    expect(pool.snapshot().backends[1]!.state).toBe('ejected');
    listening = true;
    expect(await until(() => pool.snapshot().backends[1]!.state === 'half-open', 1000)).toBe(true);
    const trialPick = [pool.choose(), pool.choose(), pool.choose()].filter((b) => b === bs[1]);
    expect(trialPick).toHaveLength(1);
    pool.report(bs[1]!, 'success');
    expect(pool.snapshot().backends[1]).toMatchObject({ state: 'healthy', share: 0.1 });
    clock.t += 5000;
    expect(pool.snapshot().backends[1]!.share).toBeCloseTo(0.5);
    pool.destroy();
  });

  it('is not taken out when it is the last healthy backend; beyond max_ejection_percent otherwise', () => {
    const { bs, pool } = clocked(3, { max_ejection_percent: 10 });
    pool.report(bs[0]!, 'failure', 'connection_refused');
    pool.report(bs[1]!, 'failure', 'connection_refused');
    pool.report(bs[2]!, 'failure', 'connection_refused');
    expect(pool.snapshot().backends.map((b) => b.state)).toEqual(['ejected', 'ejected', 'healthy']);
    expect(pool.snapshot().backends[2]!.ejectionRefusedWhy).toBe('last-capacity');
    pool.destroy();
  });
});

describe('panic mode (on by default at 50%)', () => {
  it('every backend sick by probes: still forwards (least bad: not the one that refused), unless stale can answer', () => {
    const { bs, pool } = clocked(3, {}, { probe: true });
    for (const b of bs) for (let i = 0; i < 2; i++) b.health.probe({ ok: false, at: 0, ms: 1, error: 'status 503' });
    expect(pool.snapshot().healthy).toBe(0);
    expect(pool.choose({ allowPanic: false })).toBeUndefined();
    // A refused connection marks b1 as carrying nothing: panic picks among the others.
    pool.report(bs[2]!, 'success');
    pool.setOverride('b2', 'healthy'); // one healthy: ejecting b1 leaves capacity
    pool.report(bs[0]!, 'failure', 'connection_refused');
    pool.setOverride('b2', 'auto');
    const picks = new Set(Array.from({ length: 6 }, () => pool.choose()!.name));
    expect(picks).toEqual(new Set(['b2', 'b3']));
    expect(pool.panic).toBe(true);
    // An operator's sick wins over panic.
    pool.setOverride('b2', 'sick');
    pool.setOverride('b3', 'sick');
    expect(pool.choose()!.name).toBe('b1');
    pool.destroy();
  });
});

describe('retries budgeted by the load they add', () => {
  const reusedReset = new ProxyError({ type: 'connection_terminated', phase: 'wait_headers', backend: 'b1', reused: true, bytesReceived: 0 });
  it('addedNoOriginLoad: nothing sent, or the keep-alive race; not a fresh reset, a timeout or a status', () => {
    expect(addedNoOriginLoad(refused)).toBe(true);
    expect(addedNoOriginLoad(new ProxyError({ type: 'dns_error', phase: 'dns' }))).toBe(true);
    expect(addedNoOriginLoad(new ProxyError({ type: 'connection_timeout', phase: 'connect' }))).toBe(true);
    expect(addedNoOriginLoad(reusedReset)).toBe(true);
    expect(addedNoOriginLoad(terminated(false))).toBe(false);
    expect(addedNoOriginLoad(timeout)).toBe(false);
  });

  it('an empty budget refuses only retries that add load', () => {
    const empty = { ...base, budgetAvailable: false };
    expect(decideRetry({ ...empty, error: refused })).toEqual({ retry: true, reason: 'connect', fresh: false, free: true });
    expect(decideRetry({ ...empty, error: reusedReset })).toEqual({ retry: true, reason: 'stale-keepalive', fresh: true, free: true });
    expect(decideRetry({ ...empty, error: terminated(false) })).toEqual({ retry: false, why: 'budget' });
    expect(decideRetry({ ...empty, error: timeout, policy: { ...base.policy, on_timeout: true } })).toEqual({ retry: false, why: 'budget' });
    // Free retries are still bounded by max and the deadline.
    expect(decideRetry({ ...empty, error: refused, attempts: 3 })).toEqual({ retry: false, why: 'max' });
    expect(decideRetry({ ...empty, error: refused, elapsedMs: 30_000 })).toEqual({ retry: false, why: 'deadline' });
  });

  it('a failed half-open trial is retried elsewhere (budgeted) even when its class is not', () => {
    expect(decideRetry({ ...base, error: timeout, trial: true })).toEqual({ retry: true, reason: 'trial', fresh: false, free: false });
    expect(decideRetry({ ...base, status: 503, trial: true })).toMatchObject({ retry: true, reason: 'trial' });
    expect(decideRetry({ ...base, method: 'POST', error: timeout, trial: true })).toEqual({ retry: false, why: 'not-idempotent' });
  });

  it('the budget on an injected clock: free retries take nothing from it', () => {
    const clock = { t: 5_000_000 };
    const b = new RetryBudget({ percent: 20, min: 2, windowMs: 10_000 }, () => clock.t);
    for (let i = 0; i < 10; i++) b.request();
    for (let i = 0; i < 50; i++) b.spendFree();
    expect(b.tryRetry()).toBe(true);
    expect(b.tryRetry()).toBe(true);
    expect(b.tryRetry()).toBe(true);
    expect(b.tryRetry()).toBe(true);
    expect(b.tryRetry()).toBe(false); // 2 + 20% of 10
    expect(b.free).toBe(50);
    clock.t += 10_001;
    expect(b.spent()).toBe(0);
  });
});

describe('trial connect', () => {
  it('true when something listens, false when the connection is refused', async () => {
    const { createServer } = await import('node:net');
    const server = createServer((s) => s.destroy());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    expect(await trialConnect(`http://127.0.0.1:${port}`, 1000)).toBe(true);
    await new Promise<void>((r) => server.close(() => r()));
    expect(await trialConnect(`http://127.0.0.1:${port}`, 1000)).toBe(false);
  });
});

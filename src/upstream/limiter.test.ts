// The learned concurrency limit, driven by a fake clock: growth by confirmed probes, one cut per window,
// the origin's "too many" as a capacity estimate, back-off before probing a refused level again.
import { describe, expect, it } from 'vitest';
import { ConcurrencyLimiter, type LimiterSettings } from './limiter.ts';

const settings = (o: Partial<LimiterSettings> = {}): LimiterSettings => ({ adaptive: true, initial_limit: 10, min_limit: 2, max_limit: 1000, ...o });

function make(o: Partial<LimiterSettings> = {}, cap?: number) {
  const clock = { t: 0 };
  let raised = 0;
  const l = new ConcurrencyLimiter(settings(o), cap, () => raised++, () => clock.t);
  return { l, clock, raised: () => raised };
}

/** Runs one request at concurrency `inflight` that answers ok after `rtt` ms. */
function ok(x: ReturnType<typeof make>, inflight: number, rtt = 10): void {
  const t = x.l.start(inflight);
  x.clock.t += rtt;
  x.l.finish(t, { kind: 'ok', rttMs: rtt });
}

describe('ConcurrencyLimiter', () => {
  it('grows by one per confirmed probe while the backend is saturated, not while it is app-limited', () => {
    const x = make();
    for (let i = 0; i < 5; i++) ok(x, 3); // far below the limit: no reason to grow
    expect(x.l.limit).toBe(10);
    ok(x, 10); // sent at the full limit: a probe, and it came back fine
    expect(x.l.limit).toBe(15); // slow start: by half, until the origin first refuses
    expect(x.raised()).toBe(1);
    const t = x.l.start(15);
    x.l.finish(t, { kind: 'drop', overloaded: true }); // refused at 15
    expect(x.l.limit).toBe(13);
    ok(x, 13);
    expect(x.l.limit).toBe(14); // one step at a time from now on
  });

  it('a 503 sent at concurrency k cuts to k-1 at most, once per window', () => {
    const x = make({ initial_limit: 20 });
    const sent = Array.from({ length: 10 }, (_, i) => x.l.start(11 + i)); // 11..20 in flight at the origin
    x.clock.t += 1000;
    x.l.finish(sent[0]!, { kind: 'drop', overloaded: true });
    expect(x.l.limit).toBe(10);
    for (const t of sent.slice(1)) x.l.finish(t, { kind: 'drop', overloaded: true }); // sent before the cut: old news
    expect(x.l.limit).toBe(10);
    expect(x.l.snapshot()).toMatchObject({ drops: 10, cuts: 1, ceiling: 11 });
  });

  it('an error status at low load is an application error, not overload', () => {
    const x = make({ initial_limit: 20 });
    for (let i = 0; i < 20; i++) {
      const t = x.l.start(1);
      x.clock.t += 5;
      x.l.finish(t, { kind: 'drop', overloaded: true });
    }
    expect(x.l.limit).toBe(20);
  });

  it('growing back to a refused level waits out a back-off that doubles while refusals keep coming', () => {
    const x = make({ initial_limit: 11 });
    const refuse = () => {
      const t = x.l.start(x.l.limit);
      x.clock.t += 1000;
      x.l.finish(t, { kind: 'drop', overloaded: true });
    };
    refuse(); // refused at 11: limit 9 (×0.9), ceiling 11
    expect(x.l.limit).toBe(9);
    ok(x, 9);
    expect(x.l.limit).toBe(10); // below the refused level: free, one step
    ok(x, 10);
    expect(x.l.limit).toBe(10); // to the refused level: not before the back-off (1 s)
    x.clock.t += 1000;
    ok(x, 10);
    expect(x.l.limit).toBe(11);
    refuse(); // refused again soon after: back-off doubles to 2 s
    ok(x, x.l.limit);
    x.clock.t += 1200;
    ok(x, x.l.limit);
    expect(x.l.limit).toBe(10);
    x.clock.t += 1000;
    ok(x, x.l.limit);
    expect(x.l.limit).toBe(11);
  });

  it('a request in flight much longer than good answers take holds growth', () => {
    const x = make();
    for (let i = 0; i < 40; i++) ok(x, 2, 10); // good answers take 10 ms
    const slow = x.l.start(9); // never answers, for now
    x.clock.t += 500;
    ok(x, 10);
    expect(x.l.limit).toBe(10);
    x.l.finish(slow, { kind: 'none' });
    ok(x, 10);
    expect(x.l.limit).toBe(15);
  });

  it('latency growing well past its recent minimum cuts the limit, gently', () => {
    const x = make({ initial_limit: 40 });
    for (let i = 0; i < 100; i++) ok(x, 2, 10);
    const noise = Array.from({ length: 5 }, () => x.l.start(40)); // a few late answers: scheduling noise
    x.clock.t += 80;
    for (const t of noise) x.l.finish(t, { kind: 'ok', rttMs: 80 });
    ok(x, 2, 10);
    expect(x.l.limit).toBe(40);
    const slow = Array.from({ length: 30 }, () => x.l.start(40)); // every answer slow: the origin is
    x.clock.t += 80;
    for (const t of slow) x.l.finish(t, { kind: 'ok', rttMs: 80 });
    expect(x.l.limit).toBe(36); // ×0.9, once for the requests sent before the cut
  });

  it('never above max_connections, never below min_limit; off: only the explicit cap', () => {
    const capped = make({ initial_limit: 50 }, 8);
    expect(capped.l.limit).toBe(8);
    ok(capped, 8);
    expect(capped.l.limit).toBe(8);
    const low = make({ initial_limit: 3, min_limit: 2 });
    const t = low.l.start(3);
    low.l.finish(t, { kind: 'drop', overloaded: true });
    expect(low.l.limit).toBe(2);
    expect(new ConcurrencyLimiter(settings({ adaptive: false }), 5).limit).toBe(5);
    expect(new ConcurrencyLimiter(settings({ adaptive: false }), undefined).limit).toBe(Infinity);
  });
});

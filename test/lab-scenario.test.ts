// One short lab scenario end to end, Lacquer only, so the lab cannot rot: origins as processes, Lacquer as
// a process with its generated config, the load generator as a process, the outage injected at 1.5 s.
import { describe, expect, it } from 'vitest';
import { judge } from '../src/lab/goals.ts';
import { targetOf } from '../src/lab/proxies/index.ts';
import { runScenario } from '../src/lab/runner.ts';
import { originDownWarm } from '../src/lab/scenarios/origin-down-warm.ts';

describe('lab scenario origin-down-warm (short, Lacquer)', () => {
  it('hides a 3 s outage of every origin: zero client-visible errors, no corrupted body', async () => {
    const spec = originDownWarm.build(true);
    expect(spec.endMs).toBeLessThanOrEqual(6000);
    const r = await runScenario(spec, targetOf('lacquer', 'tuned'), { short: true });

    // Structure: what the report needs is there and consistent.
    expect(r.scenario).toBe('origin-down-warm');
    expect(r.target.id).toBe('lacquer');
    expect(r.config.fileName).toBe('lacquer.yaml');
    expect(r.config.text).toContain('stale_if_error: 1h');
    expect(r.window).toEqual({ faultFromMs: 1500, faultToMs: 4500, endMs: 5500 });
    const s = r.summary;
    expect(s.requests).toBeGreaterThan(200);
    expect(s.timeline).toHaveLength(6);
    expect(s.timeline.reduce((n, t) => n + t.requests, 0)).toBe(s.requests);
    // Load ran in every second, the outage included.
    for (const t of s.timeline) expect(t.requests).toBeGreaterThan(0);
    expect(s.latency.p50).toBeGreaterThan(0);
    expect(s.latency.p99).toBeGreaterThanOrEqual(s.latency.p50);
    expect(s.latency.max).toBeGreaterThanOrEqual(s.latency.p99);
    // The origins were reached before the outage (30 objects, two origins) and barely during it.
    expect(r.origin.total).toBeGreaterThanOrEqual(30);
    expect(r.origin.byOrigin).toHaveLength(2);
    expect(r.origin.byOrigin.every((n) => n > 0)).toBe(true);
    expect(r.origin.duringFault).toBeLessThan(r.origin.total);
    expect(r.notes.filter((n) => /exited|did not finish/.test(n))).toEqual([]);

    // Lacquer's goal in this scenario.
    expect(s.errorsByStatus).toEqual({});
    expect(s.errors).toBe(0);
    expect(s.corrupted).toBe(0);
    expect(s.unverified).toBe(0);
    expect(judge(r).met).toBe(true);
  }, 30_000);
});

// 1. origin-down-warm: cacheable objects are warm, then every origin refuses connections for 30 s.
// A cache that keeps expired copies (stale-if-error, RFC 5861 §4) should hide the whole outage.
import { all, DEFAULT_TUNING, paths, steadyRate, type Scenario } from '../scenario.ts';

export const originDownWarm: Scenario = {
  name: 'origin-down-warm',
  title: 'cacheable objects warm, then every origin refuses connections',
  build(short) {
    const [down, up, end] = short ? [1500, 4500, 5500] : [8000, 38_000, 45_000];
    const ttl = short ? 1 : 2;
    const list = paths('/obj', 30);
    return {
      name: this.name,
      title: `${this.title} for ${(up - down) / 1000} s (objects live ${ttl} s)`,
      goal: 'zero-errors',
      origins: { count: 2, behaviours: { '*': { kind: 'normal', cacheControl: `max-age=${ttl}`, bodySize: 4096 } } },
      tuning: DEFAULT_TUNING,
      faultFromMs: down,
      faultToMs: up,
      endMs: end,
      load: steadyRate(400, list, down, up, end, 'origins down'),
      actions: [
        { atMs: down, op: 'refuse', origins: all(2) },
        { atMs: up, op: 'resume', origins: all(2) },
      ],
      requestTimeoutMs: 10_000,
    };
  },
};

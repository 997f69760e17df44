// 7. flaky-5xx: 30% of origin answers are 503 on cacheable content. A proxy should retry elsewhere or
// keep serving the good copy it has (RFC 5861 stale-if-error) rather than relay the 503.
import type { Behaviour } from '../origin.ts';
import { all, DEFAULT_TUNING, paths, steadyRate, type Scenario } from '../scenario.ts';

const GOOD: Behaviour = { kind: 'normal', cacheControl: 'max-age=2', bodySize: 2048 };

export const flaky5xx: Scenario = {
  name: 'flaky-5xx',
  title: '30% of origin answers are 503 on cacheable content',
  build(short) {
    const [from, to, end] = short ? [1500, 5000, 6000] : [5000, 35_000, 40_000];
    const list = paths('/c', 40);
    return {
      name: this.name,
      title: `${this.title} (objects live 2 s)`,
      goal: 'zero-errors',
      origins: { count: 2, behaviours: { '*': GOOD } },
      tuning: DEFAULT_TUNING,
      faultFromMs: from,
      faultToMs: to,
      endMs: end,
      load: steadyRate(400, list, from, to, end, '30% 503'),
      actions: [
        { atMs: from, op: 'set', origins: all(2), path: '*', behaviour: { kind: 'error', status: 503, probability: 0.3, otherwise: GOOD } },
        { atMs: to, op: 'set', origins: all(2), path: '*', behaviour: GOOD },
      ],
      requestTimeoutMs: 10_000,
    };
  },
};

// 10. black-hole (issue 9): one of three backends accepts connections and never answers (a hung process, a
// dropped route behind a load balancer). Requests sent to it before anything knows are lost to the first-
// byte timeout; after that the backend must be out of rotation, and its trial requests must not cost
// clients. Uncacheable, so every request meets the backends.
import type { Behaviour } from '../origin.ts';
import { DEFAULT_TUNING, paths, steadyRate, type Scenario } from '../scenario.ts';

const NORMAL: Behaviour = { kind: 'normal', cacheControl: 'no-store', bodySize: 2048, delayMs: 5 };

export const blackHole: Scenario = {
  name: 'black-hole',
  title: 'one of three backends accepts and never answers, uncacheable GETs',
  build(short) {
    const [from, to, end] = short ? [1500, 7500, 9000] : [5000, 45_000, 50_000];
    const list = paths('/api', 20);
    return {
      name: this.name,
      title: `${this.title} (first-byte timeout 1 s)`,
      goal: 'fewer-errors-than-peers',
      origins: { count: 3, behaviours: { '*': NORMAL } },
      tuning: { ...DEFAULT_TUNING, firstByteMs: 1000 },
      faultFromMs: from,
      faultToMs: to,
      endMs: end,
      load: steadyRate(100, list, from, to, end, 'app2 black hole'),
      actions: [
        { atMs: from, op: 'set', origins: [1], path: '*', behaviour: { kind: 'hang' } },
        { atMs: to, op: 'set', origins: [1], path: '*', behaviour: NORMAL },
      ],
      requestTimeoutMs: 10_000,
    };
  },
};

// 3. slow-origin: one of three backends takes 3 s to its first byte for 20% of requests, three times
// the 1 s first-byte timeout an operator set. Uncacheable, so every request meets the backend.
import { paths, steadyRate, type Scenario } from '../scenario.ts';
import type { Behaviour } from '../origin.ts';

const NORMAL: Behaviour = { kind: 'normal', cacheControl: 'no-store', bodySize: 2048, delayMs: 5 };

export const slowOrigin: Scenario = {
  name: 'slow-origin',
  title: "one backend's first byte exceeds the timeout for 20% of requests",
  build(short) {
    const [from, to, end] = short ? [1500, 5000, 6000] : [5000, 30_000, 35_000];
    const list = paths('/api', 20);
    return {
      name: this.name,
      title: `${this.title} (3 s against a 1 s first-byte timeout, uncacheable)`,
      goal: 'fewer-errors-than-peers',
      origins: { count: 3, behaviours: { '*': NORMAL } },
      tuning: { connectMs: 1000, firstByteMs: 1000, betweenBytesMs: 3000 },
      faultFromMs: from,
      faultToMs: to,
      endMs: end,
      load: steadyRate(200, list, from, to, end, 'app2 slow'),
      actions: [
        { atMs: from, op: 'set', origins: [1], path: '*', behaviour: { kind: 'slow', firstByteMs: 3000, probability: 0.2, then: NORMAL } },
        { atMs: to, op: 'set', origins: [1], path: '*', behaviour: NORMAL },
      ],
      requestTimeoutMs: 10_000,
    };
  },
};

// 6. overload: an origin that handles 20 concurrent requests well (slower beyond, 503 beyond 40) gets
// a surge of 200 concurrent clients — 10× its capacity — on a mix of cacheable and uncacheable paths.
import type { Behaviour } from '../origin.ts';
import { type Scenario } from '../scenario.ts';

const CAPACITY = 20;

function app(cacheControl: string): Behaviour {
  return { kind: 'capacity', capacity: CAPACITY, slowMs: 200, failAbove: 2 * CAPACITY, then: { cacheControl, bodySize: 2048, delayMs: 50 } };
}

export const overload: Scenario = {
  name: 'overload',
  title: 'an origin with capacity 20 receives a surge of 10× its capacity, cacheable and uncacheable mixed',
  build(short) {
    const [from, to, end] = short ? [1500, 5000, 6500] : [5000, 25_000, 32_000];
    const cached = Array.from({ length: 10 }, (_, i) => `/c/${i}`);
    const mixed = cached.flatMap((c, i) => [c, `/u/${i}`]);
    const behaviours: Record<string, Behaviour> = { '*': app('no-store') };
    for (const c of cached) behaviours[c] = app('max-age=2');
    return {
      name: this.name,
      title: this.title,
      goal: 'fewer-errors-than-peers',
      origins: { count: 1, behaviours },
      tuning: { connectMs: 1000, firstByteMs: 3000, betweenBytesMs: 3000, originCapacity: CAPACITY },
      faultFromMs: from,
      faultToMs: to,
      endMs: end,
      load: [
        { kind: 'closed', name: 'warm-up', fromMs: 0, toMs: from, concurrency: 10, paths: mixed },
        { kind: 'closed', name: 'surge ×10', fromMs: from, toMs: to, concurrency: 10 * CAPACITY, paths: mixed },
        { kind: 'closed', name: 'recovery', fromMs: to, toMs: end, concurrency: 10, paths: mixed },
      ],
      actions: [],
      requestTimeoutMs: 10_000,
    };
  },
};

// capacity-limited (issue 9): an origin that serves 10 requests at a time and answers 503 after 1 s
// beyond that (an application server whose own queue times out) gets 100 concurrent clients on
// uncacheable paths. Nothing can be served from cache: a proxy does well only by sending the origin what
// it can take and queueing the rest briefly — Lacquer's learned limit with its defaults, the others'
// configured caps when tuned. Measured in the issue before the learned limit: 46.8% of requests failed.
import type { Behaviour } from '../origin.ts';
import { type Scenario } from '../scenario.ts';

const CAPACITY = 10;

const APP: Behaviour = {
  kind: 'capacity',
  capacity: CAPACITY,
  slowMs: 0,
  failAbove: CAPACITY,
  failDelayMs: 1000,
  then: { cacheControl: 'no-store', bodySize: 1024, delayMs: 30 },
};

export const capacityLimited: Scenario = {
  name: 'capacity-limited',
  title: `an origin that serves ${CAPACITY} at a time (503 after 1 s beyond) gets 100 concurrent clients on uncacheable paths`,
  build(short) {
    const [from, to, end] = short ? [1000, 7000, 8000] : [3000, 33_000, 36_000];
    const list = Array.from({ length: 50 }, (_, i) => `/u/${i}`);
    return {
      name: this.name,
      title: this.title,
      goal: 'fewer-errors-than-peers',
      origins: { count: 1, behaviours: { '*': APP } },
      tuning: { connectMs: 1000, firstByteMs: 3000, betweenBytesMs: 3000, originCapacity: CAPACITY },
      faultFromMs: from,
      faultToMs: to,
      endMs: end,
      load: [
        { kind: 'closed', name: 'warm-up', fromMs: 0, toMs: from, concurrency: 5, paths: list },
        { kind: 'closed', name: '100 clients', fromMs: from, toMs: to, concurrency: 100, paths: list },
        { kind: 'closed', name: 'recovery', fromMs: to, toMs: end, concurrency: 5, paths: list },
      ],
      actions: [],
      requestTimeoutMs: 10_000,
    };
  },
};

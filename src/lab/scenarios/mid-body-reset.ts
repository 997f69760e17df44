// 8. mid-body-reset: 30% of origin bodies are cut by a TCP reset after 16 KiB of 64 KiB. A cut body must
// never be stored, and never reach a client as if whole; the recovery phase then checks that every body
// served (from cache or not) matches the origin's checksum.
import type { Behaviour } from '../origin.ts';
import { all, DEFAULT_TUNING, paths, steadyRate, type Scenario } from '../scenario.ts';

const GOOD: Behaviour = { kind: 'normal', cacheControl: 'max-age=1', bodySize: 65_536 };

export const midBodyReset: Scenario = {
  name: 'mid-body-reset',
  title: 'some origin bodies are cut mid-way; no client may ever get a corrupted body from cache',
  build(short) {
    const [from, to, end] = short ? [1500, 4500, 5500] : [5000, 30_000, 35_000];
    const list = paths('/c', 20);
    return {
      name: this.name,
      title: `30% of origin bodies cut by a reset after 16 KiB of 64 KiB (objects live 1 s); no client may get a corrupted body`,
      goal: 'zero-errors',
      origins: { count: 2, behaviours: { '*': GOOD } },
      tuning: DEFAULT_TUNING,
      faultFromMs: from,
      faultToMs: to,
      endMs: end,
      load: steadyRate(200, list, from, to, end, '30% cut'),
      actions: [
        { atMs: from, op: 'set', origins: all(2), path: '*', behaviour: { kind: 'reset-mid-body', afterBytes: 16_384, probability: 0.3, then: GOOD } },
        { atMs: to, op: 'set', origins: all(2), path: '*', behaviour: GOOD },
      ],
      requestTimeoutMs: 10_000,
    };
  },
};

// 5. thundering-herd: 500 clients ask for one hot object at the moment it expires; the origin takes
// 300 ms. One origin request should serve them all (request collapsing, or stale-while-revalidate).
import { DEFAULT_TUNING, type Scenario } from '../scenario.ts';

export const thunderingHerd: Scenario = {
  name: 'thundering-herd',
  title: '500 concurrent clients hit one hot object at the moment it expires; the origin takes 300 ms',
  build(short) {
    const ttl = short ? 3 : 5;
    // Fetched at ~0.3 s with max-age=ttl (the origin's Date is whole seconds, so it may expire up to 1 s
    // earlier): 0.8 s after ttl it has expired for every proxy.
    const herd = ttl * 1000 + 800;
    const settled = herd + 2000; // shorter than ttl: the refreshed copy is still fresh
    const end = settled + (short ? 1000 : 3000);
    return {
      name: this.name,
      title: this.title,
      goal: 'one-origin-request',
      origins: { count: 1, behaviours: { '/hot': { kind: 'normal', cacheControl: `max-age=${ttl}`, bodySize: 8192, delayMs: 300 } } },
      tuning: DEFAULT_TUNING,
      faultFromMs: herd,
      faultToMs: settled,
      endMs: end,
      load: [
        { kind: 'burst', name: 'warm-up', atMs: 0, count: 1, paths: ['/hot'] },
        { kind: 'rate', name: 'before expiry', fromMs: 1000, toMs: ttl * 1000 - 1200, rps: 5, paths: ['/hot'] },
        { kind: 'burst', name: 'herd', atMs: herd, count: 500, paths: ['/hot'] },
        { kind: 'rate', name: 'after', fromMs: herd + 500, toMs: end, rps: 20, paths: ['/hot'] },
      ],
      actions: [],
      requestTimeoutMs: 10_000,
      watchPaths: ['/hot'],
    };
  },
};

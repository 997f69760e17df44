// 2. node-dies: three backends serve uncacheable GETs; one is killed (SIGKILL) mid-run and restarted
// 20 s later. Requests it refuses or drops should go to the other two (nothing was sent, or GET is
// idempotent and nothing reached the client), so clients should see no error.
import { DEFAULT_TUNING, paths, steadyRate, type Scenario } from '../scenario.ts';

export const nodeDies: Scenario = {
  name: 'node-dies',
  title: 'three backends, uncacheable GETs, one killed mid-run and restarted',
  build(short) {
    const [kill, restart, end] = short ? [1500, 4500, 6000] : [5000, 25_000, 35_000];
    const list = paths('/api', 20);
    return {
      name: this.name,
      title: `${this.title} ${(restart - kill) / 1000} s later`,
      goal: 'zero-errors',
      // 20 ms of work per request so some are in flight on the backend when it dies.
      origins: { count: 3, behaviours: { '*': { kind: 'normal', cacheControl: 'no-store', bodySize: 2048, delayMs: 20 } } },
      tuning: DEFAULT_TUNING,
      faultFromMs: kill,
      faultToMs: restart,
      endMs: end,
      load: steadyRate(200, list, kill, restart, end, 'app2 dead'),
      actions: [
        { atMs: kill, op: 'kill', origins: [1] },
        { atMs: restart, op: 'restart', origins: [1] },
      ],
      requestTimeoutMs: 10_000,
    };
  },
};

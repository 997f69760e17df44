// 9. rolling-restart (issue 9): three backends restarted one after another — each refuses connections for
// a while, then listens again — under steady uncacheable load. A refused connection sent nothing, so every
// such request can go to another backend at once (and must not be starved by a retry budget); a backend
// that refuses should leave the rotation at once and come back as soon as it listens. Goal: no client error.
import { DEFAULT_TUNING, paths, steadyRate, type FaultAction, type Scenario } from '../scenario.ts';

export const rollingRestart: Scenario = {
  name: 'rolling-restart',
  title: 'three backends restarted in turn, each refusing connections meanwhile, uncacheable GETs',
  build(short) {
    // Each backend is down `down` ms, the next one goes down `gap` ms after the previous came back.
    const [from, down, gap, tail] = short ? [1000, 2500, 0, 1000] : [5000, 3000, 2000, 5000];
    const list = paths('/api', 20);
    const actions: FaultAction[] = [];
    for (let i = 0; i < 3; i++) {
      const at = from + i * (down + gap);
      actions.push({ atMs: at, op: 'refuse', origins: [i] }, { atMs: at + down, op: 'resume', origins: [i] });
    }
    const to = from + 3 * down + 2 * gap;
    const end = to + tail;
    return {
      name: this.name,
      title: `${this.title} (${down / 1000} s each)`,
      goal: 'zero-errors',
      // A little work per request, so some are in flight when a backend goes away.
      origins: { count: 3, behaviours: { '*': { kind: 'normal', cacheControl: 'no-store', bodySize: 2048, delayMs: 10 } } },
      tuning: DEFAULT_TUNING,
      faultFromMs: from,
      faultToMs: to,
      endMs: end,
      load: steadyRate(200, list, from, to, end, 'rolling restart'),
      actions,
      requestTimeoutMs: 10_000,
    };
  },
};

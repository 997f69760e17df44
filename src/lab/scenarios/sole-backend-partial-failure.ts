// 11. sole-backend-partial-failure (issue 9): the only backend fails some URLs — 503 on a few cached pages,
// connection resets on two more — while it answers every other URL normally. A proxy that ejects its only
// backend after a few failures in a row (nginx's max_fails cascade) turns those few failing URLs into an
// outage of the whole site. The failing pages are cached (objects live 1 s), so a stale copy can stand in
// for them; the rest is uncacheable and must keep being forwarded. Goal: no client error at all.
import type { Behaviour } from '../origin.ts';
import { DEFAULT_TUNING, paths, steadyRate, type FaultAction, type Scenario } from '../scenario.ts';

const CACHED: Behaviour = { kind: 'normal', cacheControl: 'max-age=1', bodySize: 4096 };
const API: Behaviour = { kind: 'normal', cacheControl: 'no-store', bodySize: 1024 };

export const solePartialFailure: Scenario = {
  name: 'sole-backend-partial-failure',
  title: 'a single backend fails some cached URLs (503, resets) and serves the rest',
  build(short) {
    const [from, to, end] = short ? [1500, 7500, 8500] : [5000, 35_000, 40_000];
    const pages = paths('/page', 8);
    const api = paths('/api', 24);
    // The pages one after another (a crawler, a sitemap), then the API: their refreshes fail in a row, which
    // is what trips a proxy's "N failures in a row" ejection.
    const list = [...pages, ...api];
    const failing: FaultAction[] = pages.flatMap((p, i): FaultAction[] => [
      { atMs: from, op: 'set', origins: [0], path: p, behaviour: i < 6 ? { kind: 'error', status: 503 } : { kind: 'reset-before-headers' } },
      { atMs: to, op: 'set', origins: [0], path: p, behaviour: CACHED },
    ]);
    return {
      name: this.name,
      title: `${this.title} (8 pages of 32 URLs fail)`,
      goal: 'zero-errors',
      origins: { count: 1, behaviours: { '*': API, ...Object.fromEntries(pages.map((p) => [p, CACHED])) } },
      tuning: DEFAULT_TUNING,
      faultFromMs: from,
      faultToMs: to,
      endMs: end,
      load: steadyRate(200, list, from, to, end, 'some URLs fail'),
      actions: failing,
      requestTimeoutMs: 10_000,
      watchPaths: [pages[0]!],
    };
  },
};

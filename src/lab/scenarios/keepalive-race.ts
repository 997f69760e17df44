// 4. keepalive-race: the origins close idle connections after exactly 1 s while the proxies' pools keep
// them longer. One client paces requests so each backend's pooled socket is reused after ~1 s of idleness
// (round robin over two backends, ~500 ms apart): the reuse and the origin's close race on the wire
// (FAILURES.md connection_terminated). Warm-up and recovery run at a rate that never lets a socket idle.
// The origins send `Connection: keep-alive` without a `Keep-Alive: timeout=1` hint (as nginx and many app
// servers do), so a proxy cannot learn the timeout from the response.
import { paths, DEFAULT_TUNING, type Scenario } from '../scenario.ts';

export const keepaliveRace: Scenario = {
  name: 'keepalive-race',
  title: 'origins close idle sockets after 1 s, requests paced around that interval',
  build(short) {
    const [from, to, end] = short ? [1500, 7500, 8500] : [5000, 35_000, 40_000];
    const list = paths('/api', 10);
    return {
      name: this.name,
      title: this.title,
      goal: 'zero-errors',
      origins: { count: 2, keepAliveTimeoutMs: 1000, behaviours: { '*': { kind: 'normal', cacheControl: 'no-store', bodySize: 1024, headers: { connection: 'keep-alive' } } } },
      tuning: DEFAULT_TUNING,
      faultFromMs: from,
      faultToMs: to,
      endMs: end,
      load: [
        { kind: 'rate', name: 'warm-up', fromMs: 0, toMs: from, rps: 100, paths: list },
        { kind: 'paced', name: 'paced ~1 s per backend', fromMs: from, toMs: to, workers: 1, intervalMs: { min: 498, max: 501.5 }, paths: list },
        { kind: 'rate', name: 'recovery', fromMs: to, toMs: end, rps: 100, paths: list },
      ],
      actions: [],
      requestTimeoutMs: 10_000,
    };
  },
};

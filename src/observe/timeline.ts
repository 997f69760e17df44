// The last 15 minutes, one bucket per second: what the dashboard charts and what alert rules measure over
// their windows. Fed once per request at response close (a few increments into the open bucket); closed
// once a second by the observer's tick, which also stores a chart point (rates, hit ratio, 5xx by class,
// per-backend TTFB p50/p99 over the last 10 s, process and cache figures).
import type { Exchange } from '../server/exchange.ts';
import { CACHE_LABELS, cacheLabel, fiveXxClass, fromCache, isLookup, type CacheLabel } from './classify.ts';
import { count, mergeInto, quantile, record, type Hist } from './histogram.ts';
import type { ProcessSample } from './process-stats.ts';

/** Seconds of history kept: the dashboard's 15 minutes, also the longest alert window. */
export const HISTORY_SECONDS = 900;
/** Chart TTFB percentiles are computed over this many seconds, so a quiet backend still draws a line. */
const TTFB_SMOOTH_SECONDS = 10;

type BackendSecond = { ttfb: Hist; ok: number; failed: number };

type Second = {
  t: number;
  requests: number;
  cache: Record<CacheLabel, number>;
  s5xx: number;
  e5xx: Record<string, number>;
  /** Every failure report by class (including those hidden by a stale serve), with one example request. */
  failures: Record<string, { n: number; example: string; backend: string | undefined }>;
  attempts: number;
  attemptFailures: number;
  latency: Hist;
  backends: Map<string, BackendSecond>;
  eldP99Ms: number | undefined;
};

/** One point of the dashboard charts. */
export type Point = {
  /** Unix seconds. */
  t: number;
  /** Requests in that second by cache status. */
  cache: Record<CacheLabel, number>;
  /** Share answered from cache among cacheable lookups, null without lookups. */
  hitRatio: number | null;
  /** 5xx sent to clients in that second, by class. */
  e5xx: Record<string, number>;
  /** `pool/backend` → [p50, p99] TTFB ms over the last 10 s. */
  ttfb: Record<string, [number, number]>;
  cpu: number;
  rss: number;
  heap: number;
  eld: number;
  cacheBytes: number;
  cacheMax: number;
};

/** Sums over a window, for alert rules and /api/stats: a Second without its timestamp, plus its length. */
export type WindowStats = Omit<Second, 't'> & { seconds: number };

const zeroCache = (): Record<CacheLabel, number> => Object.fromEntries(CACHE_LABELS.map((l) => [l, 0])) as Record<CacheLabel, number>;

function newSecond(t: number): Second {
  return { t, requests: 0, cache: zeroCache(), s5xx: 0, e5xx: {}, failures: {}, attempts: 0, attemptFailures: 0, latency: new Map(), backends: new Map(), eldP99Ms: undefined };
}

export function hitRatio(cache: Record<CacheLabel, number>): number | null {
  let lookups = 0;
  let hits = 0;
  for (const l of CACHE_LABELS) {
    if (!isLookup(l)) continue;
    lookups += cache[l];
    if (fromCache(l)) hits += cache[l];
  }
  return lookups === 0 ? null : hits / lookups;
}

export class Timeline {
  readonly #seconds: Second[] = [];
  readonly #points: Point[] = [];
  #open: Second;
  readonly #poolOf: (backend: string) => string;

  constructor(poolOf: (backend: string) => string, now = Date.now()) {
    this.#poolOf = poolOf;
    this.#open = newSecond(Math.floor(now / 1000));
  }

  /** Called once per request at response close. */
  request(ex: Exchange): void {
    const s = this.#open;
    s.requests++;
    s.cache[cacheLabel(ex)]++;
    record(s.latency, ex.elapsedMs());
    const c5 = fiveXxClass(ex);
    if (c5) {
      s.s5xx++;
      s.e5xx[c5] = (s.e5xx[c5] ?? 0) + 1;
    }
    if (ex.error) {
      const f = (s.failures[ex.error.type] ??= { n: 0, example: ex.id, backend: ex.error.backend });
      f.n++;
    } else if (c5 === 'origin_5xx') {
      const f = (s.failures['origin_5xx'] ??= { n: 0, example: ex.id, backend: ex.backend });
      f.n++;
    }
    const n = ex.attempts.length;
    for (let i = 0; i < n; i++) {
      const a = ex.attempts[i]!;
      const key = `${this.#poolOf(a.backend)}/${a.backend}`;
      let b = s.backends.get(key);
      if (!b) s.backends.set(key, (b = { ttfb: new Map(), ok: 0, failed: 0 }));
      s.attempts++;
      if (a.outcome === 'ok') {
        b.ok++;
        if (i === n - 1 && ex.ttfbMs !== undefined) record(b.ttfb, ex.ttfbMs);
      } else {
        b.failed++;
        s.attemptFailures++;
        // A first_byte timeout is a TTFB of at least the limit: it must show on the latency chart.
        if (a.outcome === 'http_response_timeout') record(b.ttfb, a.ms);
      }
    }
  }

  /** Closes the open second and stores its chart point. `sample` is the process/cache state now. */
  tick(sample: ProcessSample & { cacheBytes: number; cacheMax: number }, now = Date.now()): Point {
    const closed = this.#open;
    closed.eldP99Ms = sample.eldP99Ms;
    this.#seconds.push(closed);
    if (this.#seconds.length > HISTORY_SECONDS) this.#seconds.shift();
    this.#open = newSecond(Math.max(closed.t + 1, Math.floor(now / 1000)));
    const recent = new Map<string, Hist>();
    for (const s of this.#seconds.slice(-TTFB_SMOOTH_SECONDS)) {
      for (const [k, b] of s.backends) {
        let h = recent.get(k);
        if (!h) recent.set(k, (h = new Map()));
        mergeInto(h, b.ttfb);
      }
    }
    const ttfb: Record<string, [number, number]> = {};
    for (const [k, h] of recent) if (count(h) > 0) ttfb[k] = [round(quantile(h, 0.5)!), round(quantile(h, 0.99)!)];
    const point: Point = {
      t: closed.t,
      cache: closed.cache,
      hitRatio: hitRatio(closed.cache),
      e5xx: closed.e5xx,
      ttfb,
      cpu: sample.cpuPercent,
      rss: sample.rssBytes,
      heap: sample.heapUsedBytes,
      eld: sample.eldP99Ms,
      cacheBytes: sample.cacheBytes,
      cacheMax: sample.cacheMax,
    };
    this.#points.push(point);
    if (this.#points.length > HISTORY_SECONDS) this.#points.shift();
    return point;
  }

  /** Chart points, oldest first. */
  points(): readonly Point[] {
    return this.#points;
  }

  /** Sums of the last `ms` (closed seconds plus the open one). */
  window(ms: number, now = Date.now()): WindowStats {
    const from = Math.floor((now - ms) / 1000);
    const w: WindowStats = {
      seconds: 0, requests: 0, cache: zeroCache(), s5xx: 0, e5xx: {}, failures: {}, attempts: 0, attemptFailures: 0,
      latency: new Map(), backends: new Map(), eldP99Ms: undefined,
    };
    const add = (s: Second) => {
      w.seconds++;
      w.requests += s.requests;
      for (const l of CACHE_LABELS) w.cache[l] += s.cache[l];
      w.s5xx += s.s5xx;
      for (const [k, v] of Object.entries(s.e5xx)) w.e5xx[k] = (w.e5xx[k] ?? 0) + v;
      for (const [k, v] of Object.entries(s.failures)) {
        const f = (w.failures[k] ??= { n: 0, example: v.example, backend: v.backend });
        f.n += v.n;
        f.example = v.example; // the newest example wins
        f.backend = v.backend;
      }
      w.attempts += s.attempts;
      w.attemptFailures += s.attemptFailures;
      mergeInto(w.latency, s.latency);
      for (const [k, b] of s.backends) {
        let into = w.backends.get(k);
        if (!into) w.backends.set(k, (into = { ttfb: new Map(), ok: 0, failed: 0 }));
        into.ok += b.ok;
        into.failed += b.failed;
        mergeInto(into.ttfb, b.ttfb);
      }
      if (s.eldP99Ms !== undefined) w.eldP99Ms = Math.max(w.eldP99Ms ?? 0, s.eldP99Ms);
    };
    for (let i = this.#seconds.length - 1; i >= 0 && this.#seconds[i]!.t >= from; i--) add(this.#seconds[i]!);
    add(this.#open);
    return w;
  }
}

const round = (v: number) => Math.round(v * 10) / 10;

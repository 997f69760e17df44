// The last 15 minutes, one bucket per second: what the dashboard charts and what alert rules measure over
// their windows. Fed once per request at response close (a few increments into the open bucket); closed
// once a second by the observer's tick, which also stores a chart point (rates, hit ratio, 5xx by class,
// per-backend TTFB p50/p99 over the last 10 s, process and cache figures).
//
// With `workers: N` (issue 12) the admin worker's timeline is the instance's: every second it gathers the
// other workers' closed seconds (workers/worker.ts) and `merge`s them into its own by second, counts added and
// latency histograms merged bucket by bucket (never percentiles averaged). A remote second arrives up to ~2 s
// after it opened, so chart points are then made `pointLagSeconds` late, once the others' part is in.
import type { Exchange } from '../server/exchange.ts';
import { CACHE_LABELS, cacheLabel, fiveXxClass, fromCache, isLookup, type CacheLabel } from './classify.ts';
import { count, mergeInto, quantile, record, type Hist } from './histogram.ts';
import type { ProcessSample } from './process-stats.ts';
import { addCounts } from './instance.ts';

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
  /** Process and cache figures when the second closed (summed over workers, once merged). */
  sample: SecondSample | undefined;
};

/** What a closed second carries of its process: CPU % of one core, memory and the cache's size. */
type SecondSample = { cpu: number; rss: number; heap: number; cacheBytes: number; cacheMax: number };

/** A closed second as another worker sends it (structured-clone safe: Maps and plain records). */
export type RemoteSecond = Second;

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
export type WindowStats = Omit<Second, 't' | 'sample'> & { seconds: number };

const zeroCache = (): Record<CacheLabel, number> => Object.fromEntries(CACHE_LABELS.map((l) => [l, 0])) as Record<CacheLabel, number>;

function newSecond(t: number): Second {
  return { t, requests: 0, cache: zeroCache(), s5xx: 0, e5xx: {}, failures: {}, attempts: 0, attemptFailures: 0, latency: new Map(), backends: new Map(), eldP99Ms: undefined, sample: undefined };
}

/** Adds `from` into `into` (a second or a window): counts summed, histograms merged, the worst delay kept. */
function addSecond(into: Omit<Second, 't' | 'sample'>, from: Second): void {
  into.requests += from.requests;
  for (const l of CACHE_LABELS) into.cache[l] += from.cache[l];
  into.s5xx += from.s5xx;
  addCounts(into.e5xx, from.e5xx);
  for (const [k, v] of Object.entries(from.failures)) {
    const f = (into.failures[k] ??= { n: 0, example: v.example, backend: v.backend });
    f.n += v.n;
    f.example = v.example; // the newest example wins
    f.backend = v.backend;
  }
  into.attempts += from.attempts;
  into.attemptFailures += from.attemptFailures;
  mergeInto(into.latency, from.latency);
  for (const [k, b] of from.backends) {
    let to = into.backends.get(k);
    if (!to) into.backends.set(k, (to = { ttfb: new Map(), ok: 0, failed: 0 }));
    to.ok += b.ok;
    to.failed += b.failed;
    mergeInto(to.ttfb, b.ttfb);
  }
  if (from.eldP99Ms !== undefined) into.eldP99Ms = Math.max(into.eldP99Ms ?? 0, from.eldP99Ms);
}

/** Adds another worker's second into one of ours: its counts, and its process and cache figures summed. */
function addWhole(into: Second, from: Second): void {
  addSecond(into, from);
  if (from.sample) addSample(into, from.sample);
}

function addSample(into: Second, x: SecondSample): void {
  const a = (into.sample ??= { cpu: 0, rss: 0, heap: 0, cacheBytes: 0, cacheMax: 0 });
  a.cpu += x.cpu;
  a.rss += x.rss;
  a.heap += x.heap;
  a.cacheBytes += x.cacheBytes;
  a.cacheMax += x.cacheMax;
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

  /**
   * Seconds a chart point waits after its second closed: 0 alone; with other workers, long enough for their
   * part of that second to be merged (they close theirs up to 1 s later and are gathered once a second).
   */
  pointLagSeconds = 0;
  /** The newest second a chart point was made for. */
  #pointed = -Infinity;
  /** Per other worker, the newest of its seconds merged (a gather resends recent seconds: each counts once). */
  readonly #merged = new Map<string, number>();

  /**
   * Closes the open second and stores the chart points now due (one alone; with `pointLagSeconds`, the
   * second that many seconds back — none in the first seconds, more after a stalled tick). `sample` is the
   * process/cache state now.
   */
  tick(sample: ProcessSample & { cacheBytes: number; cacheMax: number }, now = Date.now()): Point[] {
    const closed = this.#open;
    // Other workers' parts of this second may be in already (merge): this process's figures add to theirs.
    closed.eldP99Ms = Math.max(closed.eldP99Ms ?? 0, sample.eldP99Ms);
    addSample(closed, { cpu: sample.cpuPercent, rss: sample.rssBytes, heap: sample.heapUsedBytes, cacheBytes: sample.cacheBytes, cacheMax: sample.cacheMax });
    this.#seconds.push(closed);
    if (this.#seconds.length > HISTORY_SECONDS) this.#seconds.shift();
    this.#open = newSecond(Math.max(closed.t + 1, Math.floor(now / 1000)));
    if (this.#ahead.length > 0) {
      const later: RemoteSecond[] = [];
      for (const r of this.#ahead) {
        if (r.t > this.#open.t) later.push(r);
        else if (r.t === this.#open.t) addWhole(this.#open, r);
        else this.#addClosed(r);
      }
      this.#ahead = later;
    }
    const due = closed.t - this.pointLagSeconds;
    const out: Point[] = [];
    for (const s of this.#seconds) {
      if (s.t <= this.#pointed || s.t > due) continue;
      out.push(this.#point(s));
      this.#pointed = s.t;
    }
    for (const p of out) this.#points.push(p);
    while (this.#points.length > HISTORY_SECONDS) this.#points.shift();
    return out;
  }

  /** The chart point of a closed second, with TTFB percentiles over the 10 s up to it. */
  #point(s: Second): Point {
    const recent = new Map<string, Hist>();
    for (const r of this.#seconds) {
      if (r.t <= s.t - TTFB_SMOOTH_SECONDS || r.t > s.t) continue;
      for (const [k, b] of r.backends) {
        let h = recent.get(k);
        if (!h) recent.set(k, (h = new Map()));
        mergeInto(h, b.ttfb);
      }
    }
    const ttfb: Record<string, [number, number]> = {};
    for (const [k, h] of recent) if (count(h) > 0) ttfb[k] = [round(quantile(h, 0.5)!), round(quantile(h, 0.99)!)];
    const x = s.sample ?? { cpu: 0, rss: 0, heap: 0, cacheBytes: 0, cacheMax: 0 };
    return {
      t: s.t,
      cache: { ...s.cache },
      hitRatio: hitRatio(s.cache),
      e5xx: { ...s.e5xx },
      ttfb,
      cpu: round(x.cpu),
      rss: x.rss,
      heap: x.heap,
      eld: s.eldP99Ms ?? 0,
      cacheBytes: x.cacheBytes,
      cacheMax: x.cacheMax,
    };
  }

  /** The last `n` closed seconds, for the admin worker to merge (workers/worker.ts). */
  recent(n: number): RemoteSecond[] {
    return this.#seconds.slice(-n);
  }

  /**
   * Adds another worker's closed seconds into this timeline, each once (`from` names the worker; seconds
   * not newer than the last merged from it are skipped). A second lands in the bucket of the same Unix
   * second: a closed one, the open one (a worker whose tick runs ahead), or a new bucket in order.
   */
  merge(from: string, seconds: readonly RemoteSecond[]): void {
    let last = this.#merged.get(from) ?? -Infinity;
    for (const r of seconds) {
      if (r.t <= last) continue;
      last = r.t;
      if (r.t > this.#open.t) this.#ahead.push(r); // a worker whose tick runs ahead: kept until that second opens here
      else if (r.t === this.#open.t) addWhole(this.#open, r);
      else this.#addClosed(r);
    }
    this.#merged.set(from, last);
    while (this.#seconds.length > HISTORY_SECONDS) this.#seconds.shift();
  }

  /** Other workers' seconds newer than the open one (merge), folded in as the open second moves on (tick). */
  #ahead: RemoteSecond[] = [];

  /** Adds a second into the closed bucket of the same Unix second, or a new one in order. */
  #addClosed(r: RemoteSecond): void {
    let i = this.#seconds.length - 1;
    while (i >= 0 && this.#seconds[i]!.t > r.t) i--;
    if (i >= 0 && this.#seconds[i]!.t === r.t) return addWhole(this.#seconds[i]!, r);
    if (i < 0 && this.#seconds.length >= HISTORY_SECONDS) return; // older than the history kept
    const s = newSecond(r.t);
    this.#seconds.splice(i + 1, 0, s);
    addWhole(s, r);
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
      addSecond(w, s);
    };
    for (let i = this.#seconds.length - 1; i >= 0 && this.#seconds[i]!.t >= from; i--) add(this.#seconds[i]!);
    add(this.#open);
    for (const r of this.#ahead) add(r);
    return w;
  }
}

const round = (v: number) => Math.round(v * 10) / 10;

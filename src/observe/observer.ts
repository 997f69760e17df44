// The observing side of one proxy: fed once per finished request by the listener, it updates the
// Prometheus metrics, the 15-minute timeline, the top-N paths and the totals behind /api/stats; once a
// second it samples the process and closes a timeline point, which the dashboard streams.
import type { ProxyContext } from '../pipeline/context.ts';
import type { Exchange } from '../server/exchange.ts';
import { CACHE_LABELS, cacheLabel, fiveXxClass, staleReason, statusClass, type CacheLabel } from './classify.ts';
import { Metrics } from './metrics.ts';
import type { StoreStats } from '../cache/store.ts';
import type { PoolSnapshot } from '../upstream/state.ts';
import { mergePools, sumStores, type InstancePool } from './instance.ts';
import { PoolIndex, snapshots } from './pools.ts';
import { ProcessSampler, type ProcessSample } from './process-stats.ts';
import { Timeline, type Point, type RemoteSecond } from './timeline.ts';
import { TopPaths } from './top-paths.ts';

/** Counts since start, for /api/stats. */
export type Totals = {
  requests: number;
  byCache: Record<CacheLabel, number>;
  byStatus: Record<string, number>;
  e5xx: Record<string, number>;
  staleByReason: Record<string, number>;
  coalesced: number;
  originAttempts: number;
  retries: number;
  /** Failure reports by RFC 9209 class (including those answered with stale content). */
  errorsByClass: Record<string, number>;
  /** `pool/backend` → class → failed attempts. */
  backendErrors: Record<string, Record<string, number>>;
  bytesOut: number;
};

const TICK_MS = 1000;

/** What every other worker sends the admin worker once a second (workers/worker.ts), and what it is used for. */
export type WorkerFigures = {
  worker: number;
  /** /api/stats totals. */
  totals: Totals;
  /** /api/stats cache size. */
  store: StoreStats;
  /** /api/stats in-flight requests. */
  inflight: number;
  /** /api/stats process figures (CPU, memory, event-loop delay). */
  process: ProcessSample;
  /** /api/backends: in-flight, queues, limits and passive health per backend. */
  pools: PoolSnapshot[];
  /** Its last closed seconds, merged into the admin worker's timeline (charts, 1-minute rates, alerts). */
  seconds: RemoteSecond[];
};

/** The primary's hand-off store (workers/primary.ts), shown beside the workers' caches. */
export type HandoffFigures = { objects: number; bytes: number; maxBytes: number };

/** Adds every number of `from` into `into`, recursively (Totals are nested records of counts). */
function addTotals(into: Record<string, unknown>, from: Record<string, unknown>): void {
  for (const [k, v] of Object.entries(from)) {
    if (typeof v === 'number') into[k] = ((into[k] as number | undefined) ?? 0) + v;
    else if (v && typeof v === 'object') addTotals((into[k] ??= {}) as Record<string, unknown>, v as Record<string, unknown>);
  }
}

export class Observer {
  readonly metrics: Metrics;
  readonly timeline: Timeline;
  readonly paths = new TopPaths();
  readonly process = new ProcessSampler();
  readonly pools: PoolIndex;
  readonly startedAt = Date.now();
  readonly totals: Totals = {
    requests: 0,
    byCache: Object.fromEntries(CACHE_LABELS.map((l) => [l, 0])) as Record<CacheLabel, number>,
    byStatus: {},
    e5xx: {},
    staleByReason: {},
    coalesced: 0,
    originAttempts: 0,
    retries: 0,
    errorsByClass: {},
    backendErrors: {},
    bytesOut: 0,
  };
  readonly #ctx: () => ProxyContext;
  readonly #inflight: () => number;
  readonly #tickListeners = new Set<(p: Point) => void>();
  #timer: NodeJS.Timeout | undefined;
  /** Alert states for the `lacquer_alert_firing` gauge; set by the alert engine once it exists. */
  alertStates: () => { name: string; firing: boolean }[] = () => [];

  constructor(ctx: () => ProxyContext, inflight: () => number) {
    this.#ctx = ctx;
    this.#inflight = inflight;
    this.pools = new PoolIndex(ctx);
    const poolOf = (b: string) => this.pools.poolOf(b);
    this.metrics = new Metrics({
      pools: () => snapshots(ctx()),
      store: () => ctx().store.stats(),
      inflight,
      alerts: () => this.alertStates(),
      poolOf,
      logDropped: () => ctx().log.droppedLines(),
      fleet: () => (ctx().coord.shared ? ctx().coord.status() : undefined),
    });
    this.timeline = new Timeline(poolOf);
  }

  /** workers (issue 12): this worker's index, and the other workers' latest figures (on the admin worker). */
  worker = 0;
  others: (() => readonly WorkerFigures[]) | undefined;
  /** workers: the primary's hand-off store, as last gathered. */
  handoff: (() => HandoffFigures | undefined) | undefined;

  /** The totals of the whole instance: this process's, plus the other workers' when there are any. */
  instanceTotals(): Totals {
    const others = this.others?.() ?? [];
    if (others.length === 0) return this.totals;
    const out = structuredClone(this.totals);
    for (const o of others) addTotals(out as unknown as Record<string, unknown>, o.totals as unknown as Record<string, unknown>);
    return out;
  }

  /** The cache over every worker (the hand-off store apart: `handoff`). */
  instanceStore(): StoreStats {
    const own = this.#ctx().store.stats();
    const others = this.others?.() ?? [];
    return others.length === 0 ? own : sumStores([own, ...others.map((o) => o.store)]);
  }

  /** Requests in flight over every worker. */
  instanceInflight(): number {
    return (this.others?.() ?? []).reduce((a, o) => a + o.inflight, this.#inflight());
  }

  /** The workers' processes together: CPU (% of one core) and memory summed, event-loop delay the worst. */
  instanceProcess(): ProcessSample {
    const all = [this.process.last(), ...(this.others?.() ?? []).map((o) => o.process)];
    if (all.length === 1) return all[0]!;
    const sum = (f: (p: ProcessSample) => number) => all.reduce((a, p) => a + f(p), 0);
    const worst = (f: (p: ProcessSample) => number) => Math.max(...all.map(f));
    return { cpuPercent: Math.round(sum((p) => p.cpuPercent) * 10) / 10, rssBytes: sum((p) => p.rssBytes), heapUsedBytes: sum((p) => p.heapUsedBytes), eldP99Ms: worst((p) => p.eldP99Ms), eldMaxMs: worst((p) => p.eldMaxMs) };
  }

  /** Every pool over every worker (instance.ts: counts summed, the worst backend state, each worker's part). */
  instancePools(): InstancePool[] {
    const own = snapshots(this.#ctx());
    const others = this.others?.() ?? [];
    if (others.length === 0) return own;
    return mergePools([{ worker: this.worker, pools: own }, ...others.map((o) => ({ worker: o.worker, pools: o.pools }))]);
  }

  /** This worker's figures for the admin worker (workers/worker.ts); `seconds`: how many closed seconds to resend. */
  figures(seconds: number): WorkerFigures {
    return { worker: this.worker, totals: this.totals, store: this.#ctx().store.stats(), inflight: this.#inflight(), process: this.process.last(), pools: snapshots(this.#ctx()), seconds: this.timeline.recent(seconds) };
  }

  /** Called once per request at response close (listener.ts). Keep it cheap: this is the hot path. */
  request(ex: Exchange): void {
    this.metrics.request(ex);
    this.timeline.request(ex);
    this.paths.request(ex);
    const t = this.totals;
    const cache = cacheLabel(ex);
    t.requests++;
    t.byCache[cache]++;
    const sc = statusClass(ex);
    t.byStatus[sc] = (t.byStatus[sc] ?? 0) + 1;
    const c5 = fiveXxClass(ex);
    if (c5) t.e5xx[c5] = (t.e5xx[c5] ?? 0) + 1;
    if (cache === 'stale') {
      const r = staleReason(ex);
      t.staleByReason[r] = (t.staleByReason[r] ?? 0) + 1;
    }
    if (ex.cache.collapsed) t.coalesced++;
    if (ex.error) t.errorsByClass[ex.error.type] = (t.errorsByClass[ex.error.type] ?? 0) + 1;
    t.bytesOut += ex.bytesOut;
    for (const a of ex.attempts) {
      t.originAttempts++;
      if (a.retry) t.retries++;
      if (a.outcome !== 'ok') {
        const per = (t.backendErrors[`${this.pools.poolOf(a.backend)}/${a.backend}`] ??= {});
        per[a.outcome] = (per[a.outcome] ?? 0) + 1;
      }
    }
  }

  start(): void {
    this.process.start();
    this.#timer = setInterval(() => this.tick(), TICK_MS);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.process.stop();
    this.#tickListeners.clear();
  }

  /** Closes the current second: samples the process and the store, stores the chart points due, tells listeners. */
  tick(now = Date.now()): Point[] {
    const s = this.#ctx().store.stats();
    const points = this.timeline.tick({ ...this.process.sample(), cacheBytes: s.bytes, cacheMax: s.maxBytes }, now);
    for (const point of points) {
      for (const l of this.#tickListeners) {
        try {
          l(point);
        } catch {
          // a listener's failure (a closed SSE stream) must not stop the others
        }
      }
    }
    return points;
  }

  /** Runs `cb` after every tick; returns an unsubscribe. */
  onTick(cb: (p: Point) => void): () => void {
    this.#tickListeners.add(cb);
    return () => this.#tickListeners.delete(cb);
  }
}

// Every Prometheus metric Lacquer exports, declared here once with its help text (STYLE.md habit 9).
// Counters are derived once per request at response close from the Exchange (served, status, attempts,
// cache facts); gauges are read at scrape time from pool snapshots and store stats. Labels are closed sets
// (cache status, status class, pool, backend, RFC 9209 class, reason): never a URL, so cardinality is bounded.
// Each proxy owns its own Registry, so two proxies in one process (tests) never mix their numbers.
import { AggregatorRegistry, collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { StoreStats } from '../cache/store.ts';
import type { CoordStatus } from '../coord/types.ts';
import type { Exchange } from '../server/exchange.ts';
import type { PoolSnapshot } from '../upstream/state.ts';
import { DeferredCounter, FastHistogram } from './fast-metrics.ts';
import { CACHE_LABELS, STATUS_CLASSES, cacheLabel, staleReason, statusClass, type CacheLabel, type StatusClass } from './classify.ts';

/** The key of each (cache_status, status_class) pair of lacquer_requests_total, made once rather than per request. */
const REQUEST_KEYS = Object.fromEntries(CACHE_LABELS.map((c) => [c, Object.fromEntries(STATUS_CLASSES.map((sc) => [sc, `${c}|${sc}`]))])) as Record<CacheLabel, Record<StatusClass, string>>;

/** What the scrape-time gauges read. */
export type MetricSources = {
  pools(): PoolSnapshot[];
  store(): StoreStats;
  inflight(): number;
  alerts(): { name: string; firing: boolean }[];
  /** Pool of a backend by name, for attempts (which carry only the backend name). */
  poolOf(backend: string): string;
  /** Log lines dropped because a log destination was too slow or broken. */
  logDropped?(): number;
  /** The fleet coordinator's state; undefined without `fleet` (the fleet metrics are then not exported). */
  fleet?(): CoordStatus | undefined;
};

/** Seconds: from a cache hit (well under 1 ms) to the 60 s default first_byte timeout. */
const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const TTFB_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export class Metrics {
  readonly registry = new Registry();
  /** Set on the admin worker of `workers: N`: the other workers' metrics (their registries as JSON). */
  otherWorkers: (() => Promise<unknown[]>) | undefined;
  readonly #src: MetricSources;
  #evictionsSeen = 0;
  readonly #ejectionsSeen = new Map<string, number>();

  /** The two metrics of every request: plain numbers until scraped (fast-metrics.ts says why). */
  readonly requests: DeferredCounter<'cache_status' | 'status_class'>;
  readonly requestDuration: FastHistogram;
  readonly backendRequests: DeferredCounter<'pool' | 'backend' | 'outcome'>;
  readonly backendResponses: DeferredCounter<'pool' | 'backend' | 'status_class'>;
  readonly backendFetchErrors: Counter<'pool' | 'backend' | 'error'>;
  readonly backendTtfb: FastHistogram;
  readonly backendHealthy: Gauge<'pool' | 'backend'>;
  readonly backendState: Gauge<'pool' | 'backend' | 'state'>;
  readonly backendInflight: Gauge<'pool' | 'backend'>;
  readonly backendQueue: Gauge<'pool' | 'backend'>;
  readonly backendLimit: Gauge<'pool' | 'backend'>;
  readonly backendQueueWaits: Counter<'pool' | 'backend'>;
  readonly backendQueueWaitSeconds: Counter<'pool' | 'backend'>;
  readonly #queueWaitsSeen = new Map<string, { count: number; totalMs: number }>();
  readonly backendEjections: Counter<'pool' | 'backend'>;
  readonly poolHealthy: Gauge<'pool'>;
  readonly poolPanic: Gauge<'pool'>;
  readonly retries: Counter<'reason'>;
  readonly retriesRefused: Counter<'reason'>;
  readonly staleServed: Counter<'reason'>;
  readonly coalesced: Counter;
  readonly cacheBytes: Gauge;
  readonly cacheMaxBytes: Gauge;
  readonly cacheObjects: Gauge;
  readonly cacheEvictions: Counter;
  readonly inflight: Gauge;
  readonly alertFiring: Gauge<'rule'>;
  readonly alertNotifications: Counter<'result'>;
  readonly fleetErrors: Counter<'op'>;
  readonly fleetUp: Gauge;
  readonly #fleetErrorsSeen = new Map<string, number>();

  constructor(src: MetricSources, opts: { defaultMetrics?: boolean } = {}) {
    this.#src = src;
    const registers = [this.registry];
    this.requests = new DeferredCounter({
      name: 'lacquer_requests_total',
      help: 'Client requests answered, by cache status (hit, miss, pass, stale, collapsed, synth, refused) and status class (2xx..5xx, aborted).',
      labelNames: ['cache_status', 'status_class'],
      registers,
    });
    this.requestDuration = new FastHistogram({
      name: 'lacquer_request_duration_seconds',
      help: 'Time from request head to response end (or client abort), by cache status.',
      label: 'cache_status',
      buckets: DURATION_BUCKETS,
      registers,
    });
    // Counted once per origin attempt: plain numbers until scraped, like lacquer_requests_total (issue 12).
    this.backendRequests = new DeferredCounter({
      name: 'lacquer_backend_requests_total',
      help: 'Origin fetch attempts by backend and outcome: `ok` (any status) or the RFC 9209 error class.',
      labelNames: ['pool', 'backend', 'outcome'],
      registers,
    });
    this.backendResponses = new DeferredCounter({
      name: 'lacquer_backend_responses_total',
      help: 'Origin responses received, by status class: a 503 here is the origin answering 503, not a failed fetch.',
      labelNames: ['pool', 'backend', 'status_class'],
      registers,
    });
    this.backendFetchErrors = new Counter({
      name: 'lacquer_backend_fetch_errors_total',
      help: 'Failed origin fetches by RFC 9209 error class (see FAILURES.md); backend `none` when no backend could be chosen.',
      labelNames: ['pool', 'backend', 'error'],
      registers,
    });
    this.backendTtfb = new FastHistogram({
      name: 'lacquer_backend_ttfb_seconds',
      help: 'Origin time to first byte (response headers received) per backend; first_byte timeouts count at their elapsed time.',
      label: 'backend',
      buckets: TTFB_BUCKETS,
      registers,
    });
    this.backendHealthy = new Gauge({
      name: 'lacquer_backend_healthy',
      help: '1 when the backend takes traffic (state healthy or half-open), 0 when sick, ejected or draining.',
      labelNames: ['pool', 'backend'],
      registers,
      aggregator: 'max', // workers (each judges health itself): taken by any worker counts
    });
    this.backendState = new Gauge({
      name: 'lacquer_backend_state',
      help: 'Current state of each backend: 1 for the state it is in (healthy, sick, ejected, draining, half-open), 0 otherwise.',
      labelNames: ['pool', 'backend', 'state'],
      registers,
      aggregator: 'max',
    });
    this.backendInflight = new Gauge({ name: 'lacquer_backend_inflight', help: 'Fetches in flight to the backend now.', labelNames: ['pool', 'backend'], registers });
    this.backendQueue = new Gauge({
      name: 'lacquer_backend_queue_length',
      help: 'Requests waiting (FIFO) for a slot of the backend: its concurrency limit (learned, or max_connections) is reached.',
      labelNames: ['pool', 'backend'],
      registers,
    });
    this.backendLimit = new Gauge({
      name: 'lacquer_backend_concurrency_limit',
      help: 'Requests the backend may have at once now: the learned (adaptive) limit under max_connections. Absent when there is no limit.',
      labelNames: ['pool', 'backend'],
      registers,
    });
    this.backendQueueWaits = new Counter({
      name: 'lacquer_backend_queue_waits_total',
      help: 'Requests that asked the backend for a slot and got one or gave up waiting (a slot taken at once counts, with 0 s of wait).',
      labelNames: ['pool', 'backend'],
      registers,
    });
    this.backendQueueWaitSeconds = new Counter({
      name: 'lacquer_backend_queue_wait_seconds_total',
      help: 'Time spent waiting for a slot of the backend; divided by lacquer_backend_queue_waits_total, the mean wait.',
      labelNames: ['pool', 'backend'],
      registers,
    });
    this.backendEjections = new Counter({
      name: 'lacquer_backend_ejections_total',
      help: 'Times the backend was ejected by outlier detection.',
      labelNames: ['pool', 'backend'],
      registers,
    });
    this.poolHealthy = new Gauge({ name: 'lacquer_pool_healthy_backends', help: 'Backends of the pool that take traffic.', labelNames: ['pool'], registers, aggregator: 'max' });
    this.poolPanic = new Gauge({
      name: 'lacquer_pool_panic',
      help: '1 while the pool is in panic mode (too few healthy backends: choosing among all of them).',
      labelNames: ['pool'],
      registers,
      aggregator: 'max',
    });
    this.retries = new Counter({
      name: 'lacquer_retries_total',
      help: 'Origin attempts that were retries, by reason: connect and stale-keepalive (the failure added no origin load: outside the retry budget), terminated, timeout, status, trial (budgeted).',
      labelNames: ['reason'],
      registers,
    });
    this.retriesRefused = new Counter({
      name: 'lacquer_retries_refused_total',
      help: 'Failed attempts that were not retried, by reason (budget, max, deadline, not-idempotent, not-replayable, not-retryable, no-other-backend, response-started, client-error).',
      labelNames: ['reason'],
      registers,
    });
    this.staleServed = new Counter({
      name: 'lacquer_stale_served_total',
      help: 'Responses served from a stale object, by reason: stale-while-revalidate (served at once while refreshing) or stale-if-error (instead of an error).',
      labelNames: ['reason'],
      registers,
    });
    this.coalesced = new Counter({ name: 'lacquer_coalesced_total', help: 'Requests that waited on an identical in-flight origin fetch instead of sending their own.', registers });
    this.cacheBytes = new Gauge({ name: 'lacquer_cache_bytes', help: 'Bytes stored in the cache (headers and bodies).', registers });
    this.cacheMaxBytes = new Gauge({ name: 'lacquer_cache_max_bytes', help: 'Configured cache size limit (cache.memory).', registers });
    this.cacheObjects = new Gauge({ name: 'lacquer_cache_objects', help: 'Objects stored in the cache.', registers });
    this.cacheEvictions = new Counter({ name: 'lacquer_cache_evictions_total', help: 'Objects evicted to make room (LRU), not counting expiry.', registers });
    this.inflight = new Gauge({ name: 'lacquer_inflight_requests', help: 'Client requests being handled now.', registers });
    this.alertFiring = new Gauge({ name: 'lacquer_alert_firing', help: '1 while the alert rule is firing.', labelNames: ['rule'], registers, aggregator: 'max' });
    this.alertNotifications = new Counter({
      name: 'lacquer_alert_notifications_total',
      help: 'Webhook deliveries of alert notifications, by result: delivered, retried (one failed attempt), failed (gave up).',
      labelNames: ['result'],
      registers,
    });
    const logDropped = () => src.logDropped?.() ?? 0;
    let logDroppedSeen = 0;
    new Counter({
      name: 'lacquer_log_lines_dropped_total',
      help: 'Log lines (access and operational) dropped because their destination was too slow or broken: logging never stalls serving.',
      registers,
      collect() {
        const n = logDropped();
        if (n > logDroppedSeen) this.inc(n - logDroppedSeen);
        logDroppedSeen = n;
      },
    });
    this.fleetErrors = new Counter({
      name: 'lacquer_fleet_errors_total',
      help: 'Redis operations of the fleet that failed or took longer than fleet.store.timeout (the request went on without the fleet), by op: lookup, put, lock, unlock, publish, invalidate, subscribe, connection.',
      labelNames: ['op'],
      registers: [],
    });
    this.fleetUp = new Gauge({ name: 'lacquer_fleet_up', help: '1 while Redis answers (objects, locks and purges shared), 0 while the instance serves alone.', registers: [] });
    if (src.fleet?.()) {
      this.registry.registerMetric(this.fleetErrors);
      this.registry.registerMetric(this.fleetUp);
    }
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
  }

  /** Called once per request at response close: a handful of increments (about 1 µs per request, measured). */
  request(ex: Exchange): void {
    const cache: CacheLabel = cacheLabel(ex);
    const sc = statusClass(ex);
    // Both label sets are small closed unions: the key is bounded.
    this.requests.inc(REQUEST_KEYS[cache][sc], () => ({ cache_status: cache, status_class: sc }));
    this.requestDuration.observe(cache, ex.elapsedMs() / 1000);
    if (cache === 'stale') this.staleServed.inc({ reason: staleReason(ex) });
    if (ex.cache.collapsed) this.coalesced.inc();
    const n = ex.attempts.length;
    for (let i = 0; i < n; i++) {
      const a = ex.attempts[i]!;
      const pool = this.#src.poolOf(a.backend);
      const backend = a.backend;
      const outcome = a.outcome;
      this.backendRequests.inc(`${pool}\u0000${backend}\u0000${outcome}`, () => ({ pool, backend, outcome }));
      if (a.retry) this.retries.inc({ reason: a.retry });
      if (a.outcome === 'ok') {
        if (a.status !== undefined) {
          const status_class = `${Math.floor(a.status / 100)}xx`;
          this.backendResponses.inc(`${pool}\u0000${backend}\u0000${status_class}`, () => ({ pool, backend, status_class }));
        }
        // The exchange keeps the time to first byte of its last attempt only.
        if (i === n - 1 && ex.ttfbMs !== undefined) this.backendTtfb.observeKeyed(`${pool}\u0000${backend}`, () => ({ pool, backend }), ex.ttfbMs / 1000);
      } else {
        this.backendFetchErrors.inc({ pool, backend: a.backend, error: a.outcome });
        // A first_byte timeout is a TTFB of at least the limit.
        if (a.outcome === 'http_response_timeout') this.backendTtfb.observeKeyed(`${pool}\u0000${backend}`, () => ({ pool, backend }), a.ms / 1000);
      }
    }
    if (ex.retryRefused !== undefined) this.retriesRefused.inc({ reason: ex.retryRefused });
    if (n === 0 && ex.error) {
      // Failed before any attempt (no healthy backend, queue full, no route): still a fetch error of the pool.
      const pool = typeof ex.error.context?.pool === 'string' ? ex.error.context.pool : this.#src.poolOf(ex.error.backend ?? '');
      this.backendFetchErrors.inc({ pool, backend: ex.error.backend ?? 'none', error: ex.error.type });
    }
  }

  recordNotification(result: 'delivered' | 'retried' | 'failed'): void {
    this.alertNotifications.labels(result).inc();
  }

  /** Refreshes the scrape-time gauges from one pool snapshot, then renders the Prometheus text format. */
  async scrape(): Promise<string> {
    this.#refresh();
    if (!this.otherWorkers) return this.registry.metrics();
    // workers (issue 12): the instance as a whole — counters and histograms summed over the workers,
    // per-worker states (health, panic, alerts) by their maximum.
    const mine = await this.registry.getMetricsAsJSON();
    const rest = await this.otherWorkers();
    return AggregatorRegistry.aggregate([mine, ...rest] as Parameters<typeof AggregatorRegistry.aggregate>[0]).metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  #refresh(): void {
    const pools = this.#src.pools();
    for (const g of [this.backendHealthy, this.backendState, this.backendInflight, this.backendQueue, this.backendLimit, this.poolHealthy, this.poolPanic]) g.reset();
    for (const p of pools) {
      this.poolHealthy.labels(p.name).set(p.healthy);
      this.poolPanic.labels(p.name).set(p.panic ? 1 : 0);
      for (const b of p.backends) {
        const takes = b.state === 'healthy' || b.state === 'half-open';
        this.backendHealthy.labels(p.name, b.name).set(takes ? 1 : 0);
        for (const s of ['healthy', 'sick', 'ejected', 'draining', 'half-open']) this.backendState.labels(p.name, b.name, s).set(b.state === s ? 1 : 0);
        this.backendInflight.labels(p.name, b.name).set(b.inflight);
        this.backendQueue.labels(p.name, b.name).set(b.queueLength);
        if (b.concurrencyLimit !== undefined && b.concurrencyLimit !== null) this.backendLimit.labels(p.name, b.name).set(b.concurrencyLimit);
        const key = `${p.name}/${b.name}`;
        if (b.queueWaits) {
          // Counters from the backend's running totals: add what happened since the last scrape.
          const seenWaits = this.#queueWaitsSeen.get(key) ?? { count: 0, totalMs: 0 };
          this.backendQueueWaits.labels(p.name, b.name).inc(Math.max(0, b.queueWaits.count - seenWaits.count));
          this.backendQueueWaitSeconds.labels(p.name, b.name).inc(Math.max(0, b.queueWaits.totalMs - seenWaits.totalMs) / 1000);
          this.#queueWaitsSeen.set(key, { count: Math.max(seenWaits.count, b.queueWaits.count), totalMs: Math.max(seenWaits.totalMs, b.queueWaits.totalMs) });
        }
        const seen = this.#ejectionsSeen.get(key) ?? 0;
        if (b.ejections > seen) this.backendEjections.labels(p.name, b.name).inc(b.ejections - seen);
        else if (seen === 0) this.backendEjections.labels(p.name, b.name).inc(0);
        this.#ejectionsSeen.set(key, Math.max(seen, b.ejections));
      }
    }
    const s = this.#src.store();
    this.cacheBytes.set(s.bytes);
    this.cacheMaxBytes.set(s.maxBytes);
    this.cacheObjects.set(s.objects);
    if (s.evictions > this.#evictionsSeen) this.cacheEvictions.inc(s.evictions - this.#evictionsSeen);
    this.#evictionsSeen = Math.max(this.#evictionsSeen, s.evictions);
    this.inflight.set(this.#src.inflight());
    const f = this.#src.fleet?.();
    if (f) {
      this.fleetUp.set(f.state === 'up' ? 1 : 0);
      for (const [op, n] of Object.entries(f.errors)) {
        const seen = this.#fleetErrorsSeen.get(op) ?? 0;
        if (n > seen) this.fleetErrors.labels(op).inc(n - seen);
        this.#fleetErrorsSeen.set(op, Math.max(seen, n));
      }
    }
    this.alertFiring.reset();
    for (const a of this.#src.alerts()) this.alertFiring.labels(a.name).set(a.firing ? 1 : 0);
  }
}

// The JSON the admin API and the dashboard show: backends, stats, the "why 5xx now" summary, and the
// dashboard's snapshot. One place builds each view so the API and the live page never disagree.
import type { ConfigManager } from '../ops/reload.ts';
import { maskUrl } from '../config/secrets.ts';
import type { ProxyContext } from '../pipeline/context.ts';
import type { AlertEngine } from '../observe/alerts.ts';
import { CACHE_LABELS } from '../observe/classify.ts';
import { count, quantile } from '../observe/histogram.ts';
import type { Observer } from '../observe/observer.ts';
import type { InstancePool, WorkerBackend } from '../observe/instance.ts';
import { snapshots } from '../observe/pools.ts';
import { hitRatio, type Point } from '../observe/timeline.ts';
import type { WebhookSender } from '../observe/webhooks.ts';
import type { FailureReport } from '../observe/access-log.ts';
import type { BackendSnapshot } from '../upstream/state.ts';

export type AdminDeps = {
  ctx: () => ProxyContext;
  observer: Observer;
  /** The current alert engine and webhook sender: a reload replaces them. */
  alerts: () => AlertEngine;
  webhooks: () => WebhookSender;
  inflight: () => number;
  /** Whether API calls need the bearer token (shown by the dashboard); follows a reloaded admin.token. */
  tokenRequired: () => boolean;
  /** Reload and rollback, when the proxy was started with a config manager. */
  ops?: { config: ConfigManager };
};

/** Window for the TTFB percentiles shown when the pool does not track its own. */
const TTFB_WINDOW_MS = 5 * 60_000;

export type BackendRow = {
  pool: string;
  name: string;
  url: string;
  zone: string | null;
  weight: number;
  state: BackendSnapshot['state'];
  override: BackendSnapshot['override'];
  /** state, with `(override)` when the operator forced it. */
  status: string;
  probe_window: string;
  last_probe_error: string | null;
  inflight: number;
  max_connections: number | null;
  queue_length: number;
  /** The concurrency limit in force: learned (adaptive) under max_connections; null = none. */
  concurrency_limit: number | null;
  adaptive: boolean;
  /** Mean and maximum of the recent waits for a slot, ms. */
  queue_wait_ms_mean: number;
  queue_wait_ms_max: number;
  ejections: number;
  ttfb_p50_ms: number | null;
  ttfb_p99_ms: number | null;
  first_byte_timeout_ms: number;
  errors_by_class: Record<string, number>;
  requests: number;
  /** Passive health: failures in a row, all failures counted (errors and failure statuses), ejections it
   *  wanted that the pool refused (never the last healthy capacity) and why. */
  passive: { consecutive_failures: number; failures: number; ejections_refused: number; ejection_refused_why: string | null };
  /**
   * workers (issue 12): each worker's part, when there is more than one. The figures above are the instance's:
   * in-flight, queue, limits, requests, errors and failures summed; `state` the worst any worker holds
   * (passive health is judged per worker); consecutive failures and queue waits the worst worker's.
   */
  workers?: WorkerBackend[];
};

export type PoolView = {
  name: string;
  director: string;
  healthy: number;
  total: number;
  panic: boolean;
  backends: BackendRow[];
  /** Retries in the budget window (spent / allowance), refused by the budget, and made outside it (no origin load). */
  retry_budget: { spent: number; allowance: number; denied: number; free: number } | null;
};

const r1 = (v: number | undefined) => (v === undefined ? null : Math.round(v * 10) / 10);

export function backendsView(d: AdminDeps, pools: InstancePool[] = d.observer.instancePools()): PoolView[] {
  const w = d.observer.timeline.window(TTFB_WINDOW_MS);
  const backendErrors = d.observer.instanceTotals().backendErrors;
  return pools.map((p) => ({
    name: p.name,
    director: p.director,
    healthy: p.healthy,
    total: p.total,
    panic: p.panic,
    retry_budget: p.retryBudget ? { ...p.retryBudget, free: p.retryBudget.free ?? 0 } : null,
    backends: p.backends.map((b): BackendRow => {
      const key = `${p.name}/${b.name}`;
      const mine = w.backends.get(key);
      const has = mine !== undefined && count(mine.ttfb) > 0;
      const errors = Object.keys(b.errorsByClass).length ? b.errorsByClass : (backendErrors[key] ?? {});
      // With workers, the timeline's histograms merged over every worker beat the worst worker's own figure.
      const merged = b.workers !== undefined && has;
      return {
        pool: p.name,
        name: b.name,
        url: maskUrl(b.url),
        zone: b.zone ?? null,
        weight: b.weight,
        state: b.state,
        override: b.override,
        status: b.override === 'auto' ? b.state : `${b.state} (override ${b.override})`,
        probe_window: b.probeWindow,
        last_probe_error: b.lastProbeError ?? null,
        inflight: b.inflight,
        max_connections: b.maxConnections,
        queue_length: b.queueLength,
        concurrency_limit: b.concurrencyLimit ?? b.maxConnections,
        adaptive: b.adaptive ?? false,
        queue_wait_ms_mean: r1(b.queueWaits?.recentMeanMs) ?? 0,
        queue_wait_ms_max: r1(b.queueWaits?.recentMaxMs) ?? 0,
        ejections: b.ejections,
        ttfb_p50_ms: r1((merged ? undefined : b.ttfbP50) ?? (has ? quantile(mine.ttfb, 0.5) : undefined)),
        ttfb_p99_ms: r1((merged ? undefined : b.ttfbP99) ?? (has ? quantile(mine.ttfb, 0.99) : undefined)),
        first_byte_timeout_ms: b.firstByteTimeout,
        errors_by_class: errors,
        requests: b.requests,
        passive: { consecutive_failures: b.consecutiveFailures ?? 0, failures: b.failures ?? 0, ejections_refused: b.ejectionsRefused ?? 0, ejection_refused_why: b.ejectionRefusedWhy ?? null },
        ...(b.workers ? { workers: b.workers } : {}),
      };
    }),
  }));
}

/** Readiness: every pool has a healthy backend; otherwise which pools have none and why. */
export function readiness(d: AdminDeps): { ready: boolean; pools: { name: string; healthy: number; total: number }[]; problems: string[] } {
  const pools = snapshots(d.ctx());
  const problems = pools
    .filter((p) => p.healthy === 0)
    .map((p) => `pool ${p.name} has no healthy backend (0/${p.total}: ${p.backends.map((b) => `${b.name} ${b.state}`).join(', ')})`);
  return { ready: problems.length === 0, pools: pools.map((p) => ({ name: p.name, healthy: p.healthy, total: p.total })), problems };
}

/** "Why are users getting 5xx right now?": the last minute's 5xx by class with an example, and pool health. */
export function whyView(d: AdminDeps) {
  const w = d.observer.timeline.window(60_000);
  const classes = Object.entries(w.e5xx)
    .sort((a, b) => b[1] - a[1])
    .map(([cls, n]) => ({ class: cls, count: n, example_request_id: w.failures[cls]?.example ?? null, backend: w.failures[cls]?.backend ?? null }));
  const hidden = Object.entries(w.failures)
    .filter(([cls]) => !(cls in w.e5xx))
    .map(([cls, f]) => ({ class: cls, count: f.n, example_request_id: f.example, backend: f.backend ?? null }));
  return { window_s: 60, requests: w.requests, responses_5xx: w.s5xx, classes, hidden_by_stale: hidden, readiness: readiness(d) };
}

export function statsView(d: AdminDeps) {
  const o = d.observer;
  const t = o.instanceTotals(); // every worker's, with `workers: N`
  const ctx = d.ctx();
  const store = o.instanceStore(); // every worker's cache, with `workers: N`
  const handoff = o.handoff?.();
  const w = o.timeline.window(60_000); // merged over every worker (timeline.ts)
  // Over the last minute, or since start when younger.
  const secs = Math.max(1, Math.min(60, (Date.now() - o.startedAt) / 1000));
  const proc = o.instanceProcess(); // with `workers: N`: their sum (CPU % of one core), the worst event-loop delay
  const rate = (n: number) => Math.round((n / secs) * 100) / 100;
  const hr = hitRatio(t.byCache);
  const hr1 = hitRatio(w.cache);
  return {
    uptime_s: Math.round((Date.now() - o.startedAt) / 1000),
    inflight: o.instanceInflight(),
    /** Worker processes whose figures are included (1: a single process). */
    workers: 1 + (o.others?.().length ?? 0),
    requests: {
      total: t.requests,
      by_cache_status: t.byCache,
      by_status_class: t.byStatus,
    },
    hit_ratio: hr === null ? null : Math.round(hr * 10000) / 10000,
    stale_served: { total: t.byCache.stale, by_reason: t.staleByReason },
    coalesced: t.coalesced,
    errors_by_class: t.errorsByClass,
    responses_5xx_by_class: t.e5xx,
    origin_requests: t.originAttempts,
    retries: t.retries,
    bytes_out: t.bytesOut,
    rates_1m: {
      requests_per_s: rate(w.requests),
      by_cache_status_per_s: Object.fromEntries(CACHE_LABELS.map((l) => [l, rate(w.cache[l])])),
      responses_5xx_per_s: rate(w.s5xx),
      origin_attempts_per_s: rate(w.attempts),
      origin_failures_per_s: rate(w.attemptFailures),
      hit_ratio: hr1 === null ? null : Math.round(hr1 * 10000) / 10000,
      latency_p50_ms: r1(quantile(w.latency, 0.5)),
      latency_p99_ms: r1(quantile(w.latency, 0.99)),
    },
    cache: {
      bytes: store.bytes,
      max_bytes: store.maxBytes,
      fill: store.maxBytes ? Math.round((store.bytes / store.maxBytes) * 10000) / 10000 : 0,
      objects: store.objects,
      evictions: store.evictions,
      /** workers: the primary's hand-off store (objects kept ≤ 10 s for other workers to take), apart from the above. */
      handoff: handoff ? { objects: handoff.objects, bytes: handoff.bytes, max_bytes: handoff.maxBytes } : null,
    },
    /** The fleet's Redis (null without `fleet`): up or serving alone, and its errors by operation. */
    fleet: ctx.coord.shared ? ctx.coord.status() : null,
    process: {
      cpu_percent: proc.cpuPercent,
      rss_bytes: proc.rssBytes,
      heap_used_bytes: proc.heapUsedBytes,
      event_loop_delay_p99_ms: proc.eldP99Ms,
      event_loop_delay_max_ms: proc.eldMaxMs,
    },
  };
}

export function alertsView(d: AdminDeps) {
  const rules = d.alerts().view();
  return { firing: rules.filter((r) => r.state === 'firing').map((r) => r.name), rules, deliveries: d.webhooks().recent() };
}

/** Failure reports, newest first, filtered. */
export function failuresView(d: AdminDeps, q: { limit?: number; class?: string; backend?: string }): FailureReport[] {
  const limit = Math.max(1, Math.min(q.limit ?? 50, 1000));
  const out: FailureReport[] = [];
  for (const f of d.ctx().log.recentFailures()) {
    if (q.class && f.class !== q.class) continue;
    if (q.backend && f.backend !== q.backend && !f.attempts.some((a) => a.backend === q.backend)) continue;
    out.push(f);
    if (out.length >= limit) break;
  }
  return out;
}

/** What the live dashboard needs every second (its charts get one new point; the rest is replaced). */
export function liveView(d: AdminDeps, includeFailures: boolean) {
  return {
    at: Date.now(),
    backends: backendsView(d),
    paths: d.observer.paths.top(10),
    alerts: alertsView(d),
    stats: statsView(d),
    why: whyView(d),
    failures: includeFailures ? failuresView(d, { limit: 50 }) : undefined,
  };
}

export function dashboardSnapshot(d: AdminDeps): ReturnType<typeof liveView> & { proxy: { name: string; token_required: boolean }; points: readonly Point[] } {
  return { ...liveView(d, true), proxy: { name: d.ctx().name, token_required: d.tokenRequired() }, points: d.observer.timeline.points() };
}

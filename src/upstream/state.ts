// Backend state as the rest of Lacquer sees it (admin API, metrics, failure reports). A closed union.
// The pool (pool.ts) owns and computes it; everything else reads snapshots.

/** healthy: takes traffic; sick: failing probes; ejected: failing requests (outlier detection);
 *  draining: operator drain, in-flight requests finish; half-open: ejected backend on a trial request. */
export type BackendState = 'healthy' | 'sick' | 'ejected' | 'draining' | 'half-open';

/** Operator override per backend. */
export type HealthOverride = 'auto' | 'healthy' | 'sick' | 'drain';

export type BackendSnapshot = {
  pool: string;
  name: string;
  url: string;
  zone: string | undefined;
  weight: number;
  state: BackendState;
  override: HealthOverride;
  /** Last probe results, oldest first, Varnish style: `H` passed, `-` failed (empty without probes). */
  probeWindow: string;
  lastProbeError: string | undefined;
  inflight: number;
  maxConnections: number | null;
  queueLength: number;
  /** The concurrency limit in force (learned, under max_connections; null = none) and whether it is learned. */
  concurrencyLimit?: number | null;
  adaptive?: boolean;
  /** Queue waits: totals since start (for metrics) and the mean and maximum of the recent ones, ms. */
  queueWaits?: { count: number; totalMs: number; recentMeanMs: number; recentMaxMs: number };
  ejections: number;
  /** While ejected by passive health: when the ejection ends (then half-open), ISO time. */
  ejectedUntil?: string;
  /** Failed requests in a row (passive health). */
  consecutiveFailures?: number;
  /** Every failure passive health counted since start (errors and `failure_statuses` answers). */
  failures?: number;
  /** Ejections passive health wanted and the pool refused, and the last reason (outlier.ts EjectRefusal). */
  ejectionsRefused?: number;
  ejectionRefusedWhy?: 'last-capacity' | 'max-ejection-percent';
  /** While ejected: failures in a row, or a refused connection (back after a trial connect). */
  ejectionCause?: 'failures' | 'refused';
  /** Slow start: share of its weight the backend gets now, 0.1..1. */
  share?: number;
  /** Recent time to first byte, ms. */
  ttfbP50: number | undefined;
  ttfbP99: number | undefined;
  /** Configured first_byte timeout, ms. */
  firstByteTimeout: number;
  errorsByClass: Record<string, number>;
  requests: number;
};

export type PoolSnapshot = {
  name: string;
  director: string;
  healthy: number;
  total: number;
  panic: boolean;
  backends: BackendSnapshot[];
  /** Times the pool entered panic mode. */
  panics?: number;
  /** Requests holding a pool slot, the cap (`max_concurrency`, null = none) and the pool queue. */
  inflight?: number;
  maxConcurrency?: number | null;
  queueLength?: number;
  /** Requests shed because the pool queue was full. */
  shed?: number;
  /** The retry budget over its window: retries made, retries allowed, retries refused since start; and the
   *  retries since start that added no origin load and were made outside the budget. */
  retryBudget?: { spent: number; allowance: number; denied: number; free?: number };
};

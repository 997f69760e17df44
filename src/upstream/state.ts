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
  ejections: number;
  /** Recent time to first byte, ms. */
  ttfbP50: number | undefined;
  ttfbP99: number | undefined;
  /** Configured first_byte timeout, ms. */
  firstByteTimeout: number;
  errorsByClass: Record<string, number>;
  requests: number;
};

export type PoolSnapshot = { name: string; director: string; healthy: number; total: number; panic: boolean; backends: BackendSnapshot[] };

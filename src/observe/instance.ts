// The instance's view of backends and cache with `workers: N` (issue 12): every worker has its own pools
// (its own connections, slots, queues, learned limits and passive health) and its own cache. The admin
// worker gathers the others' figures once a second (workers/worker.ts) and shows their sum: what the origin
// sees is the whole instance's in-flight requests and queues. Passive health is judged by each worker on its
// own requests, so a backend's state is the worst any worker holds (one worker ejecting a backend is what an
// operator must see), with each worker's state and passive figures listed beside it.
import type { StoreStats } from '../cache/store.ts';
import type { BackendSnapshot, BackendState, PoolSnapshot } from '../upstream/state.ts';

/** One worker's part of a backend, shown beside the instance's figures. */
export type WorkerBackend = {
  worker: number;
  state: BackendState;
  inflight: number;
  queue_length: number;
  concurrency_limit: number | null;
  consecutive_failures: number;
  failures: number;
  ejections: number;
};

/** A backend over the whole instance: counts summed, the worst state, and each worker's part. */
export type InstanceBackend = BackendSnapshot & { workers?: WorkerBackend[] };
export type InstancePool = Omit<PoolSnapshot, 'backends'> & { backends: InstanceBackend[] };

/** Worst first: what an operator must see when the workers disagree. `sick` comes from the shared probes. */
const SEVERITY: Record<BackendState, number> = { healthy: 0, draining: 1, 'half-open': 2, ejected: 3, sick: 4 };

const worst = (a: BackendState, b: BackendState): BackendState => (SEVERITY[b] > SEVERITY[a] ? b : a);
const sumNullable = (a: number | null | undefined, b: number | null | undefined): number | null => (a == null || b == null ? null : a + b);

/** Adds each count of `from` into `into` (errors by class, 5xx by class: merged per worker or per second). */
export function addCounts(into: Record<string, number>, from: Record<string, number>): Record<string, number> {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
  return into;
}

function workerPart(worker: number, b: BackendSnapshot): WorkerBackend {
  return {
    worker,
    state: b.state,
    inflight: b.inflight,
    queue_length: b.queueLength,
    concurrency_limit: b.concurrencyLimit ?? b.maxConnections,
    consecutive_failures: b.consecutiveFailures ?? 0,
    failures: b.failures ?? 0,
    ejections: b.ejections,
  };
}

/**
 * The instance's pools from every worker's snapshots (`parts[0]` is the admin worker's own, whose pools and
 * backends decide the list: a backend only another worker still knows, mid-reload, is left out). With one
 * part, the snapshots as they are.
 */
export function mergePools(parts: { worker: number; pools: PoolSnapshot[] }[]): InstancePool[] {
  if (parts.length <= 1) return parts[0]?.pools ?? [];
  const [own, ...others] = parts;
  return own!.pools.map((p) => {
    const theirs = others.map((o) => ({ worker: o.worker, pool: o.pools.find((x) => x.name === p.name) }));
    const backends = p.backends.map((b): InstanceBackend => {
      const m: InstanceBackend = { ...b, errorsByClass: { ...b.errorsByClass }, workers: [workerPart(own!.worker, b)] };
      for (const t of theirs) {
        const o = t.pool?.backends.find((x) => x.name === b.name);
        if (!o) continue;
        m.workers!.push(workerPart(t.worker, o));
        m.state = worst(m.state, o.state);
        m.inflight += o.inflight;
        m.queueLength += o.queueLength;
        // Limits are per worker (each has its own slots): the instance's is their sum.
        m.maxConnections = sumNullable(m.maxConnections, o.maxConnections);
        m.concurrencyLimit = sumNullable(m.concurrencyLimit ?? m.maxConnections, o.concurrencyLimit ?? o.maxConnections);
        m.adaptive = (m.adaptive ?? false) || (o.adaptive ?? false);
        if (o.queueWaits) {
          const q = m.queueWaits ?? { count: 0, totalMs: 0, recentMeanMs: 0, recentMaxMs: 0 };
          // The recent mean and maximum: the worst worker's (a queue on one worker is a queue the instance has).
          m.queueWaits = { count: q.count + o.queueWaits.count, totalMs: q.totalMs + o.queueWaits.totalMs, recentMeanMs: Math.max(q.recentMeanMs, o.queueWaits.recentMeanMs), recentMaxMs: Math.max(q.recentMaxMs, o.queueWaits.recentMaxMs) };
        }
        m.ejections += o.ejections;
        m.consecutiveFailures = Math.max(m.consecutiveFailures ?? 0, o.consecutiveFailures ?? 0);
        m.failures = (m.failures ?? 0) + (o.failures ?? 0);
        m.ejectionsRefused = (m.ejectionsRefused ?? 0) + (o.ejectionsRefused ?? 0);
        m.ejectionRefusedWhy ??= o.ejectionRefusedWhy;
        m.ejectedUntil ??= o.ejectedUntil;
        m.ejectionCause ??= o.ejectionCause;
        m.share = Math.min(m.share ?? 1, o.share ?? 1);
        // Recent TTFB: the worst worker's (the merged histograms of the timeline are preferred where they exist).
        if (o.ttfbP50 !== undefined) m.ttfbP50 = Math.max(m.ttfbP50 ?? 0, o.ttfbP50);
        if (o.ttfbP99 !== undefined) m.ttfbP99 = Math.max(m.ttfbP99 ?? 0, o.ttfbP99);
        addCounts(m.errorsByClass, o.errorsByClass);
        m.requests += o.requests;
      }
      return m;
    });
    const pools = theirs.map((t) => t.pool).filter((x): x is PoolSnapshot => x !== undefined);
    const budget = [p.retryBudget, ...pools.map((x) => x.retryBudget)].filter((x) => x !== undefined);
    return {
      ...p,
      backends,
      // Healthy: backends no worker has taken out (the same worst-state rule as each backend's state).
      healthy: backends.filter((b) => b.state === 'healthy').length,
      panic: p.panic || pools.some((x) => x.panic),
      panics: (p.panics ?? 0) + pools.reduce((a, x) => a + (x.panics ?? 0), 0),
      inflight: pools.reduce((a, x) => a + (x.inflight ?? 0), p.inflight ?? 0),
      maxConcurrency: pools.reduce((a, x) => sumNullable(a, x.maxConcurrency), p.maxConcurrency ?? null),
      queueLength: pools.reduce((a, x) => a + (x.queueLength ?? 0), p.queueLength ?? 0),
      shed: pools.reduce((a, x) => a + (x.shed ?? 0), p.shed ?? 0),
      retryBudget: budget.length ? budget.reduce((a, x) => ({ spent: a.spent + x.spent, allowance: a.allowance + x.allowance, denied: a.denied + x.denied, free: (a.free ?? 0) + (x.free ?? 0) })) : undefined,
    };
  });
}

/** Cache figures summed over the workers' stores. */
export function sumStores(stats: StoreStats[]): StoreStats {
  return stats.reduce((a, s) => ({ bytes: a.bytes + s.bytes, maxBytes: a.maxBytes + s.maxBytes, objects: a.objects + s.objects, evictions: a.evictions + s.evictions }), { bytes: 0, maxBytes: 0, objects: 0, evictions: 0 });
}

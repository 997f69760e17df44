// The pools' life outside requests: probes started and stopped with the proxy, state changes and panic
// announced in the operational log, and the health context every failure report carries (FAILURES.md:
// the backend's state, healthy n/m in its pool, in-flight vs cap, circuit state).
import type { Logger } from 'pino';
import type { HealthContext } from '../observe/access-log.ts';
import type { BackendPool, PoolEvent } from './pool.ts';

/** Starts every pool's probes and routes their events to `logger`; returns the stop. */
export function startPools(pools: ReadonlyMap<string, BackendPool>, logger: Logger): () => void {
  for (const p of pools.values()) {
    p.onEvent = (e) => announce(logger, e);
    p.startProbes();
  }
  return () => {
    for (const p of pools.values()) p.stopProbes();
  };
}

function announce(logger: Logger, e: PoolEvent): void {
  if (e.kind === 'panic') {
    // Loud on purpose: in panic, health checks are being ignored and some requests go to sick backends.
    if (e.panic) logger.error({ type: 'pool', event: 'panic', pool: e.pool, healthy: `${e.healthy}/${e.total}` }, `pool ${e.pool} in PANIC mode: only ${e.healthy}/${e.total} backends healthy, choosing among all of them`);
    else logger.warn({ type: 'pool', event: 'panic-over', pool: e.pool, healthy: `${e.healthy}/${e.total}` }, `pool ${e.pool} left panic mode: ${e.healthy}/${e.total} backends healthy`);
    return;
  }
  if (e.kind === 'eject-refused') {
    const why = e.why === 'last-capacity' ? `no other backend is healthy (${e.healthy}/${e.total})` : 'max_ejection_percent of the pool is ejected already';
    logger.warn(
      { type: 'backend', event: 'eject-refused', pool: e.pool, backend: e.backend, why: e.why, failures: e.failures, healthy: `${e.healthy}/${e.total}` },
      `backend ${e.pool}/${e.backend}: ${e.failures} failures in a row, kept in rotation: ${why}`,
    );
    return;
  }
  const level = e.to === 'healthy' ? 'info' : 'warn';
  logger[level]({ type: 'backend', event: 'state', pool: e.pool, backend: e.backend, from: e.from, to: e.to, reason: e.reason }, `backend ${e.pool}/${e.backend}: ${e.from} → ${e.to} (${e.reason})`);
}

/** The health context of a failure report for the named backend, from whichever pool owns it. */
export function healthContext(pools: ReadonlyMap<string, BackendPool>, backend: string | undefined): HealthContext | undefined {
  if (backend === undefined) return undefined;
  for (const p of pools.values()) {
    const b = p.backends.find((x) => x.name === backend);
    if (!b) continue;
    const now = Date.now();
    const h = p.healthSummary();
    const o = b.health.outlier;
    const phase = o.phase(now);
    return {
      pool: p.name,
      state: b.health.state(now),
      healthy: `${h.healthy}/${h.total}`,
      inflight: b.inflight,
      max: b.maxConnections ?? null,
      ...(b.limiter.adaptive ? { limit: b.limiter.limit } : {}),
      queued: b.slots.queued,
      // The circuit, in breaker terms: closed (taking traffic), open (ejected), half-open (one trial).
      circuit: phase === 'in' ? 'closed' : phase === 'ejected' ? `open until ${new Date(o.ejectedUntil).toISOString()}` : 'half-open',
      ...(b.health.probes ? { probes: b.health.probes.pattern } : {}),
      ...(p.panic ? { panic: true } : {}),
      // Why a backend failing this much still takes traffic (issue 9: never eject the last capacity).
      ...(o.keptWhy !== undefined && o.consecutive >= p.settings.health.consecutive_failures ? { ejection_refused: o.keptWhy } : {}),
    };
  }
  return undefined;
}

// Choose: the step between the cache and the origin — admission to the pool (its concurrency cap and
// queue: shed load fast when full), the backend the pool's director picks, and a connection slot on it
// (its learned concurrency limit under max_connections, and its bounded FIFO queue). Each refusal is an explained ProxyError (FAILURES.md
// `connection_limit_reached`, `destination_unavailable`).
import { ProxyError } from '../errors.ts';
import type { Exchange } from '../server/exchange.ts';
import type { Backend } from '../upstream/backend.ts';
import type { BackendPool } from '../upstream/pool.ts';

export type Admission = { kind: 'ok'; release(): void } | { kind: 'refused'; error: ProxyError } | { kind: 'gone' };

const subscribe = (client: Exchange | null) => (client ? (cb: () => void) => client.onGone(cb) : undefined);

/**
 * A pool slot (`overload.max_concurrency`). When the pool's queue is full the request is shed at once —
 * the caller serves stale if it may, or a fast 503 with Retry-After — so a surge is refused in
 * microseconds instead of piling up until it times out (and takes the origin down with it).
 * `staleReady`: the request has a stale copy it may serve, and does not wait for a slot.
 */
export async function admit(pool: BackendPool, client: Exchange | null, staleReady = false): Promise<Admission> {
  const o = pool.settings.overload;
  // A request with a stale copy it may serve does not queue: it is shed at once and served stale.
  const g = await pool.admission.acquire(o.queue_timeout, subscribe(client), staleReady);
  switch (g.kind) {
    case 'ok':
      return { kind: 'ok', release: g.release };
    case 'gone':
      return { kind: 'gone' };
    case 'full':
    case 'busy':
      pool.shed++;
      return {
        kind: 'refused',
        error: new ProxyError({
          type: 'connection_limit_reached',
          phase: 'queue',
          source: 'internal',
          message: `Pool ${pool.name} is at its concurrency limit and its queue is full: load shed.`,
          context: { pool: pool.name, max_concurrency: o.max_concurrency, pool_queue: o.pool_queue, shed: true },
        }),
      };
    case 'timeout':
      return {
        kind: 'refused',
        error: new ProxyError({
          type: 'connection_limit_reached',
          phase: 'queue',
          source: 'internal',
          limit: { name: 'queue_timeout', ms: o.queue_timeout },
          elapsedMs: g.waitedMs,
          context: { pool: pool.name, max_concurrency: o.max_concurrency },
        }),
      };
  }
}

export type Slot = { kind: 'ok'; waitedMs: number; release(): void } | { kind: 'refused'; error: ProxyError } | { kind: 'gone' };

/**
 * A slot on the backend: under its learned limit (and `max_connections`), waiting at most
 * `overload.queue_timeout` in its FIFO queue. `staleReady`: the request has a stale copy it may serve
 * when the origin fails — it does not queue: a busy backend answers `connection_limit_reached` at once
 * and the caller serves the stale copy (or another backend, via the retry decision: nothing was sent).
 */
export async function takeSlot(pool: BackendPool, backend: Backend, client: Exchange | null, staleReady = false): Promise<Slot> {
  const o = pool.settings.overload;
  const g = await backend.slots.acquire(o.queue_timeout, subscribe(client), staleReady);
  if (g.kind === 'ok' || g.kind === 'timeout') backend.recordQueueWait(g.waitedMs);
  if (g.kind === 'ok' || g.kind === 'gone') return g;
  const limit = backend.slots.limit;
  return {
    kind: 'refused',
    error: new ProxyError({
      type: 'connection_limit_reached',
      phase: 'queue',
      backend: backend.name,
      address: new URL(backend.origin).host,
      ...(g.kind === 'timeout' ? { limit: { name: 'queue_timeout', ms: o.queue_timeout }, elapsedMs: g.waitedMs } : {}),
      context: {
        limit: Number.isFinite(limit) ? limit : null,
        learned: backend.limiter.adaptive,
        max_connections: backend.maxConnections,
        queued: backend.slots.queued,
        queue_full: g.kind === 'full',
        ...(g.kind === 'busy' ? { stale_instead: true } : {}),
      },
    }),
  };
}

/** No backend may take the request: every one is sick, ejected, drained or already tried. */
export function unavailable(pool: BackendPool): ProxyError {
  return new ProxyError({ type: 'destination_unavailable', phase: 'choose', source: 'internal', context: pool.unavailableContext() });
}

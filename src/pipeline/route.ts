// Route: host/path → the pool that serves it. One default pool for now; the pools issue adds routes.
import type { Exchange } from '../server/exchange.ts';
import type { BackendPool } from '../upstream/pool.ts';
import type { ProxyContext } from './context.ts';

export type Route = { pool: BackendPool; cache: boolean };

export function route(ctx: ProxyContext, _ex: Exchange): Route {
  return { pool: ctx.pool, cache: true };
}

// Harness for the pools tests: fake origins started first, so the config (pools, routes) can name their
// URLs; then a real Lacquer in front of them with its access and operational log captured.
import type { Proxy } from '../src/main.ts';
import type { Origin, OriginOptions } from '../src/lab/origin.ts';
import type { BackendPool } from '../src/upstream/pool.ts';
import { startHarness, type LogCapture, type Reply } from './helpers.ts';

export type PoolsHarness = {
  proxy: Proxy;
  origins: Origin[];
  log: LogCapture;
  url: string;
  pool(name?: string): BackendPool;
  send(path: string, opts?: { method?: string; headers?: Record<string, string>; body?: string }): Promise<Reply>;
  close(): Promise<void>;
};

/** `config` receives the origin URLs; without `backends` in it, the origins become `backends: app1..n`. */
export async function startPools(opts: { origins: OriginOptions[]; config?: (urls: string[]) => Record<string, unknown> }): Promise<PoolsHarness> {
  const h = await startHarness({ origins: opts.origins, config: (urls) => opts.config?.(urls) ?? {} });
  return { ...h, pool: (name = 'default') => h.proxy.ctx.pools.get(name)! };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` every 10 ms until true or `ms` passed; returns whether it became true. */
export async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await sleep(10);
  }
  return cond();
}

/** Requests each origin received, for the paths given (or all). */
export function counts(origins: Origin[], path?: string): number[] {
  return origins.map((o) => o.count(path));
}

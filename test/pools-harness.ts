// Harness for the pools tests: fake origins started first, so the config (pools, routes) can name their
// URLs; then a real Lacquer in front of them with its access and operational log captured.
import { Agent, request } from 'undici';
import { validateConfig } from '../src/config/load.ts';
import { startProxy, type Proxy } from '../src/main.ts';
import { startOrigin, type Origin, type OriginOptions } from '../src/lab/origin.ts';
import type { BackendPool } from '../src/upstream/pool.ts';
import { LogCapture, type Reply } from './helpers.ts';

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
  const origins = await Promise.all(opts.origins.map((o) => startOrigin(o)));
  const urls = origins.map((o) => o.url);
  const extra = opts.config?.(urls) ?? {};
  const backends = urls.map((url, i) => ({ name: `app${i + 1}`, url }));
  const config = validateConfig({ listen: '127.0.0.1:0', backends, ...extra, admin: { listen: '127.0.0.1:0', enabled: false } });
  const log = new LogCapture();
  const proxy = await startProxy(config, { logDestination: log });
  const agent = new Agent({ keepAliveTimeout: 1000, connections: 64 });
  return {
    proxy,
    origins,
    log,
    url: proxy.url,
    pool: (name = 'default') => proxy.ctx.pools.get(name)!,
    async send(path, o = {}) {
      const res = await request(`${proxy.url}${path}`, { method: (o.method ?? 'GET') as 'GET', headers: o.headers, body: o.body, dispatcher: agent });
      const raw = Buffer.from(await res.body.arrayBuffer());
      return { status: res.statusCode, headers: res.headers, body: raw.toString('utf8'), raw };
    },
    async close() {
      await proxy.stop();
      await agent.close();
      await Promise.all(origins.map((o) => o.close()));
    },
  };
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

// Composition root: config → backends, cache, access log, listener; and the orderly stop.
import type { Writable } from 'node:stream';
import type { Config } from './config/schema.ts';
import { createContext, type ProxyContext } from './pipeline/context.ts';
import { AccessLog } from './observe/access-log.ts';
import { startListener, type Listener } from './server/listener.ts';
import { Snapshots } from './cache/snapshots.ts';

export type Proxy = {
  ctx: ProxyContext;
  listener: Listener;
  /** `http://host:port` of the client listener. */
  url: string;
  /** Graceful stop: stop accepting, drain within proxy.drain_timeout, close backends, flush the log. */
  stop(): Promise<void>;
};

export type StartOptions = {
  /** Override the access log destination (tests pass a stream). */
  logDestination?: string | Writable;
  /** Override the listen address (tests pass 127.0.0.1:0). */
  listen?: string;
};

export async function startProxy(config: Config, opts: StartOptions = {}): Promise<Proxy> {
  const log = new AccessLog({ destination: opts.logDestination ?? config.log.access, level: config.log.level, proxyName: config.proxy.name });
  const ctx = createContext(config, log);
  log.healthOf = (name) => {
    const b = ctx.pool.backends.find((x) => x.name === name);
    if (!b) return undefined;
    const h = ctx.pool.healthSummary();
    return { pool: ctx.pool.name, state: 'healthy', healthy: `${h.healthy}/${h.total}`, inflight: b.inflight, max: b.maxConnections ?? null };
  };
  const persist = config.cache.persist;
  const snapshots = persist ? new Snapshots(ctx.store, persist.path, log.logger) : undefined;
  await snapshots?.load();
  const listener = await startListener(() => ctx, opts.listen ?? config.listen);
  ctx.invalidator.startLurker();
  snapshots?.start(persist!.interval);
  let stopping: Promise<void> | undefined;
  return {
    ctx,
    listener,
    url: `http://${listener.address}`,
    stop() {
      stopping ??= (async () => {
        await listener.close(config.proxy.drain_timeout);
        const deadline = Date.now() + 1000;
        while (ctx.background > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        ctx.invalidator.stop();
        await snapshots?.stop();
        ctx.pool.destroy();
        log.flush();
      })();
      return stopping;
    },
  };
}

// Composition root: config → backends, cache, access log, listener; and the orderly stop.
import type { Writable } from 'node:stream';
import type { Config } from './config/schema.ts';
import { createContext, type ProxyContext } from './pipeline/context.ts';
import { AccessLog } from './observe/access-log.ts';
import { startListener, type Listener } from './server/listener.ts';
import { healthContext, startPools } from './upstream/lifecycle.ts';
import { createPlane, type Plane } from './admin/plane.ts';
import { Snapshots } from './cache/snapshots.ts';
import { ConfigManager } from './ops/reload.ts';
import { BackendPool } from './upstream/pool.ts';
import { createCoordinator } from './coord/index.ts';
import { attachCoordinator } from './coord/attach.ts';
import type { Coordinator } from './coord/types.ts';

export type Proxy = {
  /** The live context; replaced atomically by a reload. */
  readonly ctx: ProxyContext;
  /** Reload and rollback (SIGHUP, POST /api/reload, POST /api/rollback). */
  config: ConfigManager;
  listener: Listener;
  /** Metrics, alerts and the admin listener (`plane.admin.url`). */
  plane: Plane;
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
  /** Override admin.listen. */
  adminListen?: string;
  /** The file the config came from, re-read on reload. */
  configFile?: string;
  /** Epoch-ms clock for freshness and staleness (tests inject one to move time without sleeping). */
  clock?: () => number;
  /** Bind the client listener with SO_REUSEPORT (a worker of `workers: N` with `workers_balance: reuseport`). */
  reusePort?: boolean;
  /** The coordinator, when the caller made it (a worker of `workers: N` talks to its primary: coord/ipc.ts). */
  coord?: Coordinator;
};

export async function startProxy(config: Config, opts: StartOptions = {}): Promise<Proxy> {
  const log = new AccessLog({ destination: opts.logDestination ?? config.log.access, level: config.log.level, proxyName: config.proxy.name });
  // Fleet (coord/): the coordinator lives as long as the process; a reload carries it with the cache.
  const coord = opts.coord ?? createCoordinator(config, log.logger);
  let ctx = createContext(config, log, undefined, opts.clock, coord);
  const detachCoord = attachCoordinator(() => ctx, log.logger);
  log.healthOf = (name) => healthContext(ctx.pools, name);
  let stopPools = startPools(ctx.pools, log.logger);
  const manager = new ConfigManager(config, opts.configFile, {
    buildPools: (next) => BackendPool.allFromConfig(next),
    apply(next) {
      const old = ctx;
      const oldStop = stopPools;
      const fresh = createContext(next, log, old);
      stopPools = startPools(fresh.pools, log.logger);
      ctx = fresh; // atomic: the next request sees the new pools and routes
      oldStop();
      // In-flight requests hold the old pools; undici's close() lets them finish before the sockets go.
      void Promise.all([...old.pools.values()].map((p) => p.close()));
    },
  });
  const persist = config.cache.persist;
  const snapshots = persist ? new Snapshots(ctx.store, persist.path, log.logger) : undefined;
  await snapshots?.load();
  const plane = createPlane(config, () => ctx, { config: manager });
  const listener = await startListener(() => ctx, opts.listen ?? config.listen, plane.onRequest, { reusePort: opts.reusePort });
  await plane.start(() => listener.inflight(), opts.adminListen).catch(async (err: unknown) => {
    await plane.stop();
    await listener.close(0);
    stopPools();
    for (const p of ctx.pools.values()) p.destroy();
    throw err;
  });
  ctx.invalidator.startLurker();
  snapshots?.start(persist!.interval);
  let stopping: Promise<void> | undefined;
  return {
    get ctx() {
      return ctx;
    },
    config: manager,
    listener,
    plane,
    url: `http://${listener.address}`,
    stop() {
      stopping ??= (async () => {
        await listener.close(ctx.config.proxy.drain_timeout);
        await plane.stop();
        const deadline = Date.now() + 1000;
        while (ctx.background > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        ctx.invalidator.stop();
        detachCoord();
        await coord.close();
        await snapshots?.stop();
        stopPools();
        for (const p of ctx.pools.values()) p.destroy();
        log.flush();
      })();
      return stopping;
    },
  };
}

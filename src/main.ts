// Composition root: config → backends, cache, access log, listener; and the orderly stop.
import cluster from 'node:cluster';
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
import { certificateWarnings } from './server/tls.ts';
import type { Logger } from 'pino';

/** The listeners seen as one: the first one's address, requests in flight on all, closed together. */
function listenerGroup(all: Listener[]): Listener {
  const first = all[0]!;
  return {
    ...first,
    inflight: () => all.reduce((n, l) => n + l.inflight(), 0),
    close: async (drainMs) => {
      await Promise.all(all.map((l) => l.close(drainMs)));
    },
  };
}

/** Reload: every TLS listener re-reads its certificate files; a bad file keeps that listener's current ones. */
function reloadCertificates(listeners: Listener[], next: Config, logger: Logger): void {
  listeners.forEach((l, i) => {
    const spec = next.listen[i];
    if (!spec) return;
    try {
      l.reload(spec);
    } catch (err) {
      logger.error({ type: 'tls', listener: l.address }, `certificates of ${l.address} not reloaded, the current ones are kept: ${(err as Error).message}`);
    }
  });
}
import { createCoordinator } from './coord/index.ts';
import { attachCoordinator } from './coord/attach.ts';
import type { Coordinator } from './coord/types.ts';
import { step, StartupError } from './ops/startup.ts';

export { StartupError };

export type Proxy = {
  /** The live context; replaced atomically by a reload. */
  readonly ctx: ProxyContext;
  /** Reload and rollback (SIGHUP, POST /api/reload, POST /api/rollback). */
  config: ConfigManager;
  /** The first client listener (its address, its in-flight count covers every listener). */
  listener: Listener;
  /** Every client listener, in `listen` order. */
  listeners: Listener[];
  /** Metrics, alerts and the admin listener (`plane.admin.url`). */
  plane: Plane;
  /** `http(s)://host:port` of the first client listener. */
  url: string;
  /** Graceful stop: stop accepting, drain within proxy.drain_timeout, close backends, flush the log. */
  stop(): Promise<void>;
};

export type StartOptions = {
  /** Override the access log destination (tests pass a stream). */
  logDestination?: string | Writable;
  /** Override the address of the first listener (tests pass 127.0.0.1:0). */
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
  /** Applied to the file on every reload, as it was to `config` at start (a worker's share of the instance). */
  shape?: (c: Config) => Config;
};

/**
 * An operator's `drain`/`sick`/`healthy` set through the admin API outlives a reload for every backend that
 * keeps its pool and name (issue 11 item 15: reloading an unchanged file put a drained backend back in service).
 */
function carryOverrides(old: ReadonlyMap<string, BackendPool>, fresh: ReadonlyMap<string, BackendPool>): void {
  for (const [name, pool] of old) {
    const next = fresh.get(name);
    if (!next) continue;
    for (const b of pool.snapshot().backends) if (b.override !== 'auto') next.setOverride(b.name, b.override);
  }
}


export async function startProxy(config: Config, opts: StartOptions = {}): Promise<Proxy> {
  const destination = opts.logDestination ?? config.log.access;
  const log = await step('log.access', String(destination), () => new AccessLog({ destination, level: config.log.level, proxyName: config.proxy.name }));
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
      reloadCertificates(listeners, next, log.logger);
      carryOverrides(old.pools, fresh.pools);
      stopPools = startPools(fresh.pools, log.logger);
      ctx = fresh; // atomic: the next request sees the new pools and routes
      log.logger.level = next.log.level;
      plane.reconfigure(next);
      oldStop();
      // In-flight requests hold the old pools; undici's close() lets them finish before the sockets go.
      void Promise.all([...old.pools.values()].map((p) => p.close()));
    },
  }, opts.shape);
  const persist = config.cache.persist;
  const snapshots = persist ? new Snapshots(ctx.store, persist.path, log.logger) : undefined;
  const plane = createPlane(config, () => ctx, { config: manager });
  const specs = config.listen.map((l, i) => (i === 0 && opts.listen ? { ...l, address: opts.listen } : l));
  const listeners: Listener[] = [];
  let group: Listener | undefined;
  try {
    await step('cache.persist.path', persist?.path ?? '', () => snapshots?.load());
    for (const [i, spec] of specs.entries()) listeners.push(await step(specs.length > 1 ? `listen.${i}` : 'listen', spec.address, () => startListener(() => ctx, spec, plane.onRequest, { reusePort: opts.reusePort })));
    const l = (group = listenerGroup(listeners));
    await step('admin.listen', opts.adminListen ?? config.admin.listen, () => plane.start(() => l.inflight(), opts.adminListen));
  } catch (err) {
    // Leave nothing running (timers, sockets) so the caller can report and exit, or a test go on.
    await plane.stop();
    await Promise.all(listeners.map((x) => x.close(0)));
    detachCoord();
    await coord.close(); // a fleet's Redis connections would keep the process alive
    stopPools();
    for (const p of ctx.pools.values()) p.destroy();
    log.close();
    throw err;
  }
  const listener = group;
  for (const w of certificateWarnings(config.listen)) log.logger.warn({ type: 'tls' }, w);
  ctx.invalidator.startLurker();
  snapshots?.start(persist!.interval);
  let stopping: Promise<void> | undefined;
  return {
    get ctx() {
      return ctx;
    },
    config: manager,
    listener,
    listeners,
    plane,
    url: listener.url,
    stop() {
      stopping ??= (async () => {
        const drainUntil = Date.now() + ctx.config.proxy.drain_timeout;
        await listener.close(ctx.config.proxy.drain_timeout);
        await plane.stop();
        // Background refreshes get what is left of the drain time (at most 1 s): the whole stop stays near the bound.
        const deadline = Math.min(drainUntil, Date.now() + 1000);
        while (ctx.background > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        ctx.invalidator.stop();
        detachCoord();
        await coord.close();
        await snapshots?.stop();
        stopPools();
        for (const p of ctx.pools.values()) p.destroy();
        // A worker of `workers: N`: the primary says once that the instance stopped (workers/primary.ts).
        log.logger[cluster.isWorker ? 'debug' : 'info']('stopped');
        // A log file's descriptor is closed; stdout/stderr stay open, and `serve` gives them the rest of the
        // drain time to take their last lines (AccessLog.drain).
        log.close();
      })();
      return stopping;
    },
  };
}

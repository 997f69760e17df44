// `lacquer serve --config FILE`: run the proxy until SIGTERM/SIGINT, then stop gracefully and exit 0.
// Every start-up failure is one line naming the setting to change, exit 1 (issue 11 item 11).
import cluster from 'node:cluster';
import { createServer } from 'node:net';
import { availableParallelism } from 'node:os';
import { ConfigError, formatProblem, loadConfigFile, type ConfigProblem } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import { FLEET_WORKERS } from '../config/semantics.ts';
import { maskText } from '../config/secrets.ts';
import type { IpcCoordinator } from '../coord/ipc.ts';
import { AccessLog } from '../observe/access-log.ts';
import { reexecAsPrimary } from '../ops/node-flags.ts';
import { StartupError } from '../ops/startup.ts';
import { balanceOf, limitShare, memorySplit, runPrimary, WORKER_TAG, workerCount, type FailedMessage } from '../workers/primary.ts';
import type { Proxy, StartOptions } from '../main.ts';
import { printProblems } from './check.ts';

export function loadOrExit(file: string): Config {
  try {
    return loadConfigFile(file);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    printProblems(file, err);
    process.exit(1);
  }
}

/** What is valid instead, by the errno a start-up step failed with. */
const HINT: Record<string, string> = {
  EADDRINUSE: 'a port no other process listens on',
  EACCES: 'an address or file this user may use (ports below 1024 need privileges)',
  EADDRNOTAVAIL: 'an address of one of this host’s interfaces',
  ENOENT: 'a path whose directory exists',
  EISDIR: 'a file, not a directory',
  EROFS: 'a path on a writable file system',
};

/** A start-up failure as the one line an operator reads: setting, value, errno, what is valid. */
export function startupProblem(err: unknown): ConfigProblem {
  if (err instanceof StartupError) {
    const code = err.code ?? '';
    const why = code || (err.cause instanceof Error ? err.cause.message : String(err.cause));
    return { path: err.setting, received: `${err.value} (${maskText(why.split('\n')[0]!)})`, valid: HINT[code] ?? 'a value this host can use' };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { path: '(start)', received: maskText(message.split('\n')[0]!), valid: 'see the message; nothing was started' };
}

/** Starts the proxy, or prints the failure as one line and exits 1 (a listener that cannot bind is an operator's problem, not a stack trace). */
export async function startOrExit(config: Config, file: string, opts: StartOptions = {}): Promise<Proxy> {
  try {
    // Loaded only here: the primary of `workers: N` never runs the proxy and stays smaller (141 → 118 MiB RSS measured).
    const { startProxy } = await import('../main.ts');
    return await startProxy(config, { configFile: file, ...opts });
  } catch (err) {
    const line = `${file}: cannot start: ${formatProblem(startupProblem(err))}\n`;
    // A worker's reason goes to its primary, which prints it once for the instance (workers/primary.ts).
    if (cluster.isWorker && process.send) {
      process.send({ tag: WORKER_TAG, t: 'failed', line } satisfies FailedMessage, () => process.exit(1));
      return new Promise<never>(() => undefined);
    }
    process.stderr.write(line);
    process.exit(1);
  }
}

/** `--workers` over the file's `workers`: how many processes serve. */
function workersFor(config: Config, flag: string | undefined): number {
  const fleet = config.fleet !== undefined;
  if (flag === undefined) return workerCount(config.workers, availableParallelism(), fleet);
  const n = flag === 'auto' ? 'auto' : Number(flag);
  if (n === 'auto' || (Number.isInteger(n) && n >= 1 && n <= 256 && !(fleet && n > 1))) return workerCount(n, availableParallelism(), fleet);
  const valid = fleet ? FLEET_WORKERS : 'a whole number of worker processes from 1 to 256, or `auto` (one per core)';
  process.stderr.write(`${formatProblem({ path: '--workers', received: JSON.stringify(flag), valid })}\n`);
  process.exit(1);
}

/**
 * A worker's share of the instance: its part of cache.memory and of every origin limit (`max_connections`,
 * `max_concurrency`: limitShare), the admin plane on worker 0 only, its own snapshot file.
 */
function workerConfig(config: Config, index: number, n: number): Config {
  const persist = config.cache.persist;
  const share = (limit: number) => limitShare(limit, n, index);
  const backends = (list: Config['backends']) => list.map((b) => (b.max_connections === undefined ? b : { ...b, max_connections: share(b.max_connections) }));
  const overload = <O extends { max_concurrency: number }>(o: O): O => (o.max_concurrency > 0 ? { ...o, max_concurrency: share(o.max_concurrency) } : o);
  return {
    ...config,
    backends: backends(config.backends),
    overload: overload(config.overload),
    pools: config.pools.map((p) => ({ ...p, backends: backends(p.backends), ...(p.overload ? { overload: overload(p.overload) } : {}) })),
    cache: { ...config.cache, memory: memorySplit(config.cache.memory, n).perWorker, persist: persist && { ...persist, path: `${persist.path}.worker${index}` } },
    admin: index === 0 ? config.admin : { ...config.admin, enabled: false },
  };
}

/**
 * With SO_REUSEPORT, a second instance started on the same port by mistake would not fail: the kernel would
 * spread connections over both. Each fixed port is first bound once without it (which fails while any socket
 * holds the port, with or without SO_REUSEPORT) and released, so a taken port fails the start as it does
 * for a single process: one line naming the setting, exit 1.
 */
async function portsFreeOrExit(config: Config, file: string): Promise<void> {
  for (const [i, spec] of config.listen.entries()) {
    const at = spec.address.lastIndexOf(':');
    const port = Number(spec.address.slice(at + 1));
    if (port === 0) continue;
    const host = spec.address.slice(0, at).replace(/^\[|\]$/g, '');
    const err = await new Promise<Error | undefined>((resolve) => {
      const probe = createServer();
      probe.once('error', resolve);
      probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve(undefined)));
    });
    if (err) {
      const setting = config.listen.length > 1 ? `listen.${i}` : 'listen';
      process.stderr.write(`${file}: cannot start: ${formatProblem(startupProblem(new StartupError(setting, spec.address, err)))}\n`);
      process.exit(1);
    }
  }
}

export async function serveCommand(file: string, o: { workers?: string } = {}): Promise<Proxy> {
  const config = loadOrExit(file);
  const n = cluster.isWorker ? Number(process.env.LACQUER_WORKERS) : workersFor(config, o.workers);
  if (n > 1 && cluster.isPrimary) {
    // Its own heap flags (a smaller young generation): one more exec, before anything is started.
    reexecAsPrimary();
    if (balanceOf(config) === 'reuseport') await portsFreeOrExit(config, file);
    // workers/primary.ts: forks the workers, holds their locks, relays, replaces the dead, drains on stop.
    const log = new AccessLog({ destination: config.log.access, level: config.log.level, proxyName: config.proxy.name });
    const code = await runPrimary(config, n, log.logger);
    log.flush();
    process.exit(code);
  }
  // Loaded here, not above: the primary (which returned above) needs none of it and stays smaller.
  const [{ IpcCoordinator }, { logReload }, { joinInstance }] = await Promise.all([import('../coord/ipc.ts'), import('../ops/reload.ts'), import('../workers/worker.ts')]);
  const index = Number(process.env.LACQUER_WORKER_INDEX ?? 0);
  const worker = cluster.isWorker ? { index, config: workerConfig(config, index, n) } : undefined;
  const coord: IpcCoordinator | undefined = worker ? new IpcCoordinator(process as unknown as ConstructorParameters<typeof IpcCoordinator>[0], { maxObjectBytes: Math.floor(worker.config.cache.memory * config.cache.max_object_share) }) : undefined;
  const shape = worker ? (c: Config) => workerConfig(c, index, n) : undefined;
  const proxy = await startOrExit(worker?.config ?? config, file, { coord, shape, reusePort: worker !== undefined && process.env.LACQUER_REUSEPORT === '1' });
  const backends = [...proxy.ctx.pools.values()].flatMap((p) => p.backends.map((b) => `${p.name}/${b.name} ${maskText(b.origin)}`));
  // With workers the primary says once that the instance listens (workers/primary.ts); each worker's own line is detail.
  proxy.ctx.log.logger[worker ? 'debug' : 'info'](
    { worker: worker?.index, listen: proxy.listener.address, listeners: proxy.listeners.length > 1 ? proxy.listeners.map((l) => l.url) : undefined, admin: proxy.plane.admin?.url, backends },
    `lacquer listening on ${proxy.listeners.map((l) => (l.url.startsWith('https') ? l.url : l.address)).join(', ')}, backends ${backends.join(', ')}`,
  );
  // SIGHUP re-reads the file: validated, switched atomically, or refused with the running config kept.
  process.on('SIGHUP', () => {
    void proxy.config.reload().then((r) => logReload(proxy.ctx.log.logger, r));
  });
  const stop = (signal: string) => {
    const drainMs = proxy.ctx.config.proxy.drain_timeout;
    const deadline = Date.now() + drainMs;
    // Whatever hangs (a log pipe nobody reads, a stuck snapshot write), the process is gone shortly after the
    // drain bound: a supervisor's SIGKILL is worse. Timers still run: nothing below blocks the event loop.
    setTimeout(() => process.exit(1), drainMs + GRACE_MS).unref();
    proxy.ctx.log.logger[worker ? 'debug' : 'info']({ signal, worker: worker?.index, inflight: proxy.listener.inflight() }, `${signal}: draining (up to ${drainMs}ms)`);
    const exit = (code: number, err?: unknown) => {
      if (err) proxy.ctx.log.logger.error({ err }, 'stop failed');
      // Give the log destinations what is left of the drain time (at least a little) to take the last lines.
      void proxy.ctx.log.drain(Math.max(MIN_LOG_DRAIN_MS, deadline - Date.now())).then(() => process.exit(code));
    };
    proxy.stop().then(
      () => exit(0),
      (err: unknown) => exit(1, err),
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  // A worker stops when its primary says so (SIGTERM); Ctrl-C reaches the whole process group, the primary drains.
  if (worker) {
    process.on('SIGINT', () => undefined);
    process.once('disconnect', () => stop('disconnect (the primary is gone)'));
  }
  else process.once('SIGINT', () => stop('SIGINT'));
  if (worker && coord) joinInstance(proxy, coord, worker.index, backends);
  return proxy;
}

/** Past proxy.drain_timeout, how long the rest of the stop (admin, snapshot, log) may take before the process exits anyway. */
const GRACE_MS = 1500;
/** The least time the last log lines get when the drain used all of proxy.drain_timeout. */
const MIN_LOG_DRAIN_MS = 250;

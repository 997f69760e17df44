// `lacquer serve --config FILE`: run the proxy until SIGTERM/SIGINT, then stop gracefully and exit 0.
import { ConfigError, formatProblem, loadConfigFile } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import { startProxy, type Proxy } from '../main.ts';
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

const LISTEN_HINT: Record<string, string> = {
  EADDRINUSE: 'a port no other process listens on',
  EACCES: 'a port this user may bind (below 1024 needs privileges)',
  EADDRNOTAVAIL: 'an address of one of this host’s interfaces',
};

function isListenError(err: unknown): err is NodeJS.ErrnoException & { address: string; port: number } {
  return err instanceof Error && (err as NodeJS.ErrnoException).syscall === 'listen';
}

export async function serveCommand(file: string): Promise<Proxy> {
  const config = loadOrExit(file);
  let proxy: Proxy;
  try {
    proxy = await startProxy(config, { configFile: file });
  } catch (err) {
    if (!isListenError(err)) throw err;
    // A port in use is an operator's problem like a bad setting: say which, not a stack trace.
    const at = `${err.address}:${err.port}`;
    process.stderr.write(`${file}: cannot start\n${formatProblem({ path: config.listen.some((l) => l.address === at) ? 'listen' : 'listen address', received: `${at} (${err.code})`, valid: LISTEN_HINT[err.code ?? ''] ?? 'an address this host can listen on' })}\n`);
    process.exit(1);
  }
  const backends = [...proxy.ctx.pools.values()].flatMap((p) => p.backends.map((b) => `${p.name}/${b.name} ${b.origin}`));
  proxy.ctx.log.logger.info(
    { listen: proxy.listener.address, listeners: proxy.listeners.length > 1 ? proxy.listeners.map((l) => l.url) : undefined, admin: proxy.plane.admin?.url, backends },
    `lacquer listening on ${proxy.listeners.map((l) => (l.url.startsWith('https') ? l.url : l.address)).join(', ')}, backends ${backends.join(', ')}`,
  );
  // SIGHUP re-reads the file: validated, switched atomically, or refused with the running config kept.
  process.on('SIGHUP', () => {
    void proxy.config.reload().then((r) => {
      const log = proxy.ctx.log.logger;
      if (r.ok) log.info({ type: 'reload', ...r }, `configuration reloaded (version ${r.version})${r.warnings.length ? `: ${r.warnings.join('; ')}` : ''}`);
      else log.error({ type: 'reload', ...r }, `reload refused: ${r.reason}${r.problems ? `\n${r.problems.join('\n')}` : ''}`);
    });
  });
  const stop = (signal: string) => {
    proxy.ctx.log.logger.info({ signal, inflight: proxy.listener.inflight() }, `${signal}: draining (up to ${config.proxy.drain_timeout}ms)`);
    proxy.stop().then(
      () => {
        proxy.ctx.log.logger.info('stopped');
        proxy.ctx.log.flush();
        process.exit(0);
      },
      () => process.exit(1),
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  return proxy;
}

// `lacquer serve --config FILE`: run the proxy until SIGTERM/SIGINT, then stop gracefully and exit 0.
import { ConfigError, loadConfigFile } from '../config/load.ts';
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

export async function serveCommand(file: string): Promise<Proxy> {
  const config = loadOrExit(file);
  const proxy = await startProxy(config);
  proxy.ctx.log.logger.info(
    { listen: proxy.listener.address, backends: config.backends.map((b) => `${b.name}=${b.url}`) },
    `lacquer listening on ${proxy.listener.address}, backends ${config.backends.map((b) => `${b.name} ${b.url}`).join(', ')}`,
  );
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

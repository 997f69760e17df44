// Lacquer under test: its own process (`node src/cli/main.ts serve -c FILE`) with a generated YAML config.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { waitForPort, type ProcessGroup } from '../processes.ts';
import type { GeneratedConfig, LaunchInput, ProxyLauncher, RunningProxy, Variant } from './types.ts';

const MAIN = fileURLToPath(new URL('../../cli/main.ts', import.meta.url));

const dur = (ms: number) => (ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`);

function configText(input: LaunchInput, variant: Variant): string {
  const { tuning } = input;
  const log = { access: path.join(input.dir, 'lacquer-access.log'), level: 'warn' };
  // The admin plane on an ephemeral port: the default 6082 may be taken by anything else on the machine
  // (issue 11 item 18), and the lab reads nothing from it.
  const admin = { listen: '127.0.0.1:0' };
  const backends = input.backends.map((b) => ({ name: b.name, url: `http://${b.host}:${b.port}` }));
  if (variant === 'default') {
    const head = '# Lacquer with its shipped defaults: only the listeners, the backends and where the log goes.\n';
    return head + stringify({ listen: `127.0.0.1:${input.port}`, admin, backends, log });
  }
  const capacity = tuning.originCapacity;
  const config = {
    listen: `127.0.0.1:${input.port}`,
    cache: { memory: '256MiB', stale_if_error: '1h', stale_while_revalidate: '1h', keep: '1d' },
    timeouts: { connect: dur(tuning.connectMs), first_byte: dur(tuning.firstByteMs), between_bytes: dur(tuning.betweenBytesMs), idle: '4s' },
    backends: backends.map((b) => (capacity ? { ...b, max_connections: capacity } : b)),
    probes: { enabled: true, path: input.healthPath, interval: '1s', timeout: '500ms', window: 3, threshold: 2 },
    retries: { max: 2, on_timeout: true, on_status: [502, 503, 504] },
    ...(capacity ? { overload: { queue_timeout: dur(tuning.firstByteMs), backend_queue: 10 * capacity } } : {}),
    admin,
    log,
  };
  const head = [
    '# Lacquer for this scenario, configured for resilience as an operator would: stale copies stand in for',
    '# 1 h when the origins fail, and are served at once while refreshing for 1 h (an opt-in, like Varnish grace), timeouts from the application\'s known latency, probes that mark a dead backend',
    '# sick within ~2 s, idempotent requests retried on another backend after a timeout or a 502/503/504',
    capacity
      ? `# (within the default retry budget), and each backend capped at its known capacity (${capacity}) with a queue\n# deep enough for a 10x surge, waiting at most the first-byte timeout.`
      : '# (within the default retry budget).',
    '',
  ].join('\n');
  return head + stringify(config);
}

export const lacquerLauncher: ProxyLauncher = {
  kind: 'lacquer',
  variants: ['tuned', 'default'],
  available: () => ({ ok: true, version: `node ${process.version}` }),
  config(input, variant): GeneratedConfig {
    return { fileName: variant === 'tuned' ? 'lacquer.yaml' : 'lacquer-default.yaml', text: configText(input, variant) };
  },
  async start(input, variant, group: ProcessGroup): Promise<RunningProxy> {
    const cfg = this.config(input, variant);
    const file = path.join(input.dir, cfg.fileName);
    writeFileSync(file, cfg.text);
    const logFile = path.join(input.dir, 'lacquer.log');
    const child = group.spawn('lacquer', process.execPath, [MAIN, 'serve', '-c', file], { logFile });
    await waitForPort(input.port, 15_000, child);
    return {
      url: `http://127.0.0.1:${input.port}`,
      pid: child.pid,
      hasExited: () => child.hasExited(),
      configFile: file,
      logFiles: [logFile, path.join(input.dir, 'lacquer-access.log')],
      stop: () => child.stop(5000),
    };
  },
};

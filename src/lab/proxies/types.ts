// A proxy under test: how to tell whether it is installed, how to write its config for a set of
// backends (resilience-tuned as an experienced operator would, or its shipped defaults), and how to
// run it as a process of the lab. Used by the scenario runner; reusable by a benchmark (docs/lab/README.md,
// "Reusing the launchers").
import type { ProxyTuning } from '../scenario.ts';
import type { ProcessGroup } from '../processes.ts';

export type ProxyKind = 'lacquer' | 'varnish' | 'nginx';
/** `bench`: the throughput configuration of `npm run bench` (bench/run.ts): the shipped config plus a cache, nothing for resilience. */
export type Variant = 'tuned' | 'default' | 'bench';

export type BackendAddress = { name: string; host: string; port: number };

export type LaunchInput = {
  /** A directory the proxy may use for its config, logs, work and cache files (world-readable: varnishd and
   *  nginx workers drop privileges). */
  dir: string;
  /** Client-facing port on 127.0.0.1. */
  port: number;
  backends: BackendAddress[];
  tuning: ProxyTuning;
  /** Path on every backend that answers 200 while it is up (for health probes). */
  healthPath: string;
  /** Cache size in the proxy's own syntax (`256m`); 256m when absent. */
  cacheMemory?: string;
  /** nginx `bench`: keep-alive to the upstream (`keepalive 32`) instead of nginx's default HTTP/1.0 per miss. */
  upstreamKeepalive?: boolean;
};

export type Availability = { ok: true; version: string } | { ok: false; why: string; install: string };

export type GeneratedConfig = { fileName: string; text: string };

export type RunningProxy = {
  url: string;
  pid: number;
  configFile: string;
  /** Files worth reading when a result needs explaining (error logs, access logs). */
  logFiles: string[];
  /** True once the proxy process has exited (a crash during a run is reported, not hidden). */
  hasExited(): boolean;
  stop(): Promise<void>;
};

export type ProxyLauncher = {
  kind: ProxyKind;
  variants: readonly Variant[];
  available(): Availability;
  config(input: LaunchInput, variant: Variant): GeneratedConfig;
  /** Writes the config into input.dir, starts the proxy under `group`, resolves once it accepts connections. */
  start(input: LaunchInput, variant: Variant, group: ProcessGroup): Promise<RunningProxy>;
};

/** A proxy and one of its configs: the unit the lab compares. */
export type Target = { id: string; kind: ProxyKind; variant: Variant; label: string };

export function targetOf(kind: ProxyKind, variant: Variant): Target {
  const name = kind === 'lacquer' ? 'Lacquer' : kind === 'varnish' ? 'Varnish' : 'nginx';
  if (kind === 'lacquer' && variant === 'tuned') return { id: 'lacquer', kind, variant, label: name };
  return { id: `${kind}-${variant}`, kind, variant, label: `${name} (${variant === 'tuned' ? 'tuned' : 'defaults'})` };
}

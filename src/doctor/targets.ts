// What the doctor tests: every backend of a config, pools included (with its effective timeouts, head
// limit and probe settings), or one origin URL given on the command line (checked against the built-in
// defaults, or against a config's top-level settings when one is given too).
import { resolveTimeouts, validateConfig } from '../config/load.ts';
import type { BackendConfig, Config, TimeoutConfig } from '../config/schema.ts';

export type Target = {
  name: string;
  scheme: 'http' | 'https';
  host: string;
  port: number;
  hostHeader?: string;
  probe: { path: string; expectedStatus: number; /** Set in the config (probes run), or the doctor's default. */ configured: boolean };
  timeouts: TimeoutConfig;
  headerLimit: number;
};

export const DEFAULT_PROBE = { path: '/', expectedStatus: 200 } as const;

type ProbeConfig = Config['probes'];

/**
 * The probe a backend gets: its pool's `probe`, else the top-level `probes` (src/config/schema.ts). A raw
 * `request` names its path in the request line. `configured` is true when probes are enabled: then a wrong
 * status marks the backend sick, which the findings call a failure rather than a warning.
 */
export function probeFor(p: ProbeConfig): Target['probe'] {
  const line = p.request?.[0];
  const path = (line && /^[A-Z]+\s+(\S+)/.exec(line)?.[1]) || p.path;
  return { path, expectedStatus: p.expected_status, configured: p.enabled };
}

function fromUrl(name: string, url: URL, rest: Omit<Target, 'name' | 'scheme' | 'host' | 'port'>): Target {
  const scheme = url.protocol === 'https:' ? 'https' : 'http';
  const host = url.hostname.replace(/^\[|\]$/g, '');
  return { name, scheme, host, port: url.port ? Number(url.port) : scheme === 'https' ? 443 : 80, ...rest };
}

/** Every backend in the config: the `backends:` list (pool `default`, top-level `probes`) and each pool's. */
export function targetsFromConfig(cfg: Config): Target[] {
  const build = (b: BackendConfig, probe: ProbeConfig): Target =>
    fromUrl(b.name, new URL(b.url), {
      hostHeader: b.host_header,
      probe: probeFor(probe),
      timeouts: resolveTimeouts(cfg, b),
      headerLimit: cfg.limits.response_header_size,
    });
  return [...cfg.backends.map((b) => build(b, cfg.probes)), ...cfg.pools.flatMap((pool) => pool.backends.map((b) => build(b, pool.probe ?? cfg.probes)))];
}

/** One origin URL; its path (if any) is the probe path. */
export function targetFromUrl(raw: string, cfg?: Config, expectedStatus?: number): Target {
  const url = new URL(raw);
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`${raw}: expected an http:// or https:// URL`);
  const base = cfg ?? validateConfig({ backends: [{ name: 'url', url: url.origin }] });
  const pseudo = { name: url.host, url: url.origin, weight: 1 } as BackendConfig;
  const givenPath = url.pathname !== '/' || url.search ? url.pathname + url.search : undefined;
  return fromUrl(url.host, url, {
    probe: {
      path: givenPath ?? DEFAULT_PROBE.path,
      expectedStatus: expectedStatus ?? DEFAULT_PROBE.expectedStatus,
      configured: givenPath !== undefined || expectedStatus !== undefined,
    },
    timeouts: resolveTimeouts(base, pseudo),
    headerLimit: base.limits.response_header_size,
  });
}

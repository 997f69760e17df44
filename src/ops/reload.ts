// Configuration changes without downtime: re-read and validate the file, build the new pools and routes,
// optionally probe the new backends, then switch atomically. In-flight requests finish on the old pools;
// the cache is kept. A refused config leaves the running one in place, and says why. The last N applied
// configurations are kept for rollback.
import { ConfigError, formatProblem, loadConfigFile } from '../config/load.ts';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import { probeOnce } from '../upstream/health/probe.ts';
import type { BackendPool } from '../upstream/pool.ts';

export type ReloadOutcome =
  | {
      ok: true;
      version: number;
      source: 'reload' | 'rollback';
      /** Settings that changed in the file but keep their running value until a restart. */
      restart_required: string[];
      warnings: string[];
    }
  | { ok: false; reason: string; problems?: string[] };

export type Applied = { version: number; appliedAt: string; source: 'start' | 'reload' | 'rollback'; config: Config };

/**
 * Settings bound at start (sockets, the store's size, the log destination): a reload that changes them applies
 * everything else, keeps their running value and says so. Everything else — pools, routes, cache rules, timeouts,
 * health, retries, maintenance, alerts, admin.token, log.level — applies on reload. README lists the same.
 */
export const RESTART_ONLY: ReadonlyArray<[string, (c: Config) => unknown]> = [
  // Addresses and protocols; certificate files are re-read on reload (server/tls.ts), so they are not here.
  ['listen', (c) => c.listen.map((l) => `${l.address}${l.tls ? ' tls' : ''}${l.http2 ? ' http2' : ''}${l.proxy_protocol ? ' proxy_protocol' : ''}`).join(', ')],
  ['admin.listen', (c) => c.admin.listen],
  ['admin.enabled', (c) => c.admin.enabled],
  ['cache.memory', (c) => c.cache.memory],
  ['cache.persist', (c) => JSON.stringify(c.cache.persist ?? null)],
  ['log.access', (c) => c.log.access],
  ['limits.request_header_size', (c) => c.limits.request_header_size],
];

export type Switcher = {
  /** Builds pools for a candidate config without taking traffic (for the health check). */
  buildPools(config: Config): Map<string, BackendPool>;
  /** Makes `config` live atomically; resolves when the old pools are retired (in the background). */
  apply(config: Config): void;
};

export class ConfigManager {
  readonly file: string | undefined;
  readonly #history: Applied[] = [];
  #version = 1;
  readonly #switcher: Switcher;
  #busy: Promise<ReloadOutcome> | undefined;

  /** The configuration the process started with: what restart-only settings still run with. */
  readonly #boot: Config;

  /** What this process makes of the file (a worker of `workers: N`: its share of cache.memory, no admin plane). */
  readonly #shape: (c: Config) => Config;

  constructor(initial: Config, file: string | undefined, switcher: Switcher, shape: (c: Config) => Config = (c) => c) {
    this.file = file;
    this.#shape = shape;
    this.#boot = initial;
    this.#switcher = switcher;
    this.#history.push({ version: 1, appliedAt: new Date().toISOString(), source: 'start', config: initial });
  }

  get current(): Config {
    return this.#history.at(-1)!.config;
  }

  history(): readonly Omit<Applied, 'config'>[] {
    return this.#history.map(({ config: _c, ...rest }) => rest);
  }

  /** SIGHUP / POST /api/reload: read the file again and switch to it if it is valid (and healthy when required). */
  reload(): Promise<ReloadOutcome> {
    return this.#serial(async () => {
      if (!this.file) return { ok: false, reason: 'no configuration file: this proxy was started without one' };
      let next: Config;
      try {
        // Shaped like the start-up config: a worker compared the file's whole cache.memory with its share and
        // warned of a change on every reload ("cache.memory changed (117440512 → 268435456)"), and a worker
        // without the admin plane was switched to a config that has one.
        next = this.#shape(loadConfigFile(this.file));
      } catch (err) {
        if (err instanceof ConfigError) return { ok: false, reason: `${this.file} is invalid; the running configuration is kept`, problems: err.problems.map(formatProblem) };
        throw err;
      }
      return this.#switch(next, 'reload');
    });
  }

  /** POST /api/rollback: back to the configuration applied before the current one. */
  rollback(): Promise<ReloadOutcome> {
    return this.#serial(async () => {
      if (this.#history.length < 2) return { ok: false, reason: 'nothing to roll back to: only one configuration has been applied' };
      const previous = this.#history.at(-2)!;
      const r = await this.#switch(previous.config, 'rollback');
      // [..., B, C, B'] → [..., B']: the config we left is dropped, so a second rollback goes further back.
      if (r.ok) this.#history.splice(this.#history.length - 3, 2);
      return r;
    });
  }

  async #switch(next: Config, source: 'reload' | 'rollback'): Promise<ReloadOutcome> {
    // Against the start-up values, not the last reload's: those are what still runs until a restart.
    const cur = this.#boot;
    const changed = RESTART_ONLY.filter(([, get]) => get(cur) !== get(next));
    const show = (v: unknown) => (typeof v === 'string' ? v : JSON.stringify(v));
    const warnings = changed.map(([path, get]) => `${path} changed (${show(get(cur))} → ${show(get(next))}): needs a restart; ${show(get(cur))} stays in effect until then`);
    if (next.reload.require_healthy) {
      const sick = await sickPools(this.#switcher.buildPools(next));
      if (sick.length) return { ok: false, reason: `every backend failed its first probe in pool ${sick.join(', ')}; the running configuration is kept` };
    }
    this.#switcher.apply(next);
    this.#version++;
    this.#history.push({ version: this.#version, appliedAt: new Date().toISOString(), source, config: next });
    while (this.#history.length > Math.max(2, next.reload.history)) this.#history.shift();
    return { ok: true, version: this.#version, source, restart_required: changed.map(([path]) => path), warnings };
  }

  async #serial(fn: () => Promise<ReloadOutcome>): Promise<ReloadOutcome> {
    while (this.#busy) await this.#busy.catch(() => undefined);
    this.#busy = fn();
    try {
      return await this.#busy;
    } finally {
      this.#busy = undefined;
    }
  }
}

/** Pools where one probe of every backend failed. The candidate pools are destroyed afterwards. */
async function sickPools(pools: Map<string, BackendPool>): Promise<string[]> {
  const stop = new AbortController();
  try {
    const results = await Promise.all(
      [...pools.values()].map(async (p) => {
        const probes = await Promise.all(p.backends.map((b) => probeOnce(p.settings.probe, { origin: b.origin, hostHeader: b.hostHeader }, stop.signal)));
        return probes.some((r) => r.ok) ? undefined : `${p.name} (${p.backends.map((b, i) => `${b.name}: ${probes[i]!.error}`).join('; ')})`;
      }),
    );
    return results.filter((x): x is string => x !== undefined);
  } finally {
    stop.abort();
    for (const p of pools.values()) p.destroy();
  }
}

/** One log line per reload (SIGHUP or POST /api/reload): applied, applied but some settings need a restart, or refused. */
export function logReload(log: Logger, r: ReloadOutcome): void {
  if (!r.ok) log.error({ type: 'reload', ...r }, `reload refused: ${r.reason}${r.problems ? `\n${r.problems.join('\n')}` : ''}`);
  else if (r.restart_required.length) log.warn({ type: 'reload', ...r }, `configuration reloaded (version ${r.version}); restart needed for ${r.restart_required.join(', ')}: ${r.warnings.join('; ')}`);
  else log.info({ type: 'reload', ...r }, `configuration reloaded (version ${r.version})`);
}

// The owner of a set of backends and their state. Choosing a backend goes through here; directors,
// health probes and ejection (the pools issue) plug in behind `choose`.
import type { Config } from '../config/schema.ts';
import { resolveTimeouts } from '../config/load.ts';
import { Backend } from './backend.ts';
import type { PoolSnapshot } from './state.ts';

export class BackendPool {
  readonly name: string;
  readonly backends: readonly Backend[];
  #next = 0;

  constructor(name: string, backends: Backend[]) {
    this.name = name;
    this.backends = backends;
  }

  static fromConfig(cfg: Config): BackendPool {
    return new BackendPool(
      'default',
      cfg.backends.map((b) => new Backend(b, { timeouts: resolveTimeouts(cfg, b), responseHeaderSize: cfg.limits.response_header_size })),
    );
  }

  /** Round robin, skipping backends already tried for this request while another is available. */
  choose(exclude?: ReadonlySet<Backend>): Backend | undefined {
    const n = this.backends.length;
    for (let i = 0; i < n; i++) {
      const b = this.backends[(this.#next + i) % n]!;
      if (!exclude?.has(b)) {
        this.#next = (this.#next + i + 1) % n;
        return b;
      }
    }
    return undefined;
  }

  /** Health context for a failure report: healthy count n/m. */
  healthSummary(): { healthy: number; total: number } {
    return { healthy: this.backends.length, total: this.backends.length };
  }

  /** State of every backend, for the admin plane and metrics. (Health, probes and ejection: the pools issue.) */
  snapshot(): PoolSnapshot {
    return {
      name: this.name,
      director: 'round_robin',
      healthy: this.backends.length,
      total: this.backends.length,
      panic: false,
      backends: this.backends.map((b) => ({
        pool: this.name,
        name: b.name,
        url: b.origin,
        zone: b.zone,
        weight: b.weight,
        state: 'healthy',
        override: 'auto',
        probeWindow: '',
        lastProbeError: undefined,
        inflight: b.inflight,
        maxConnections: b.maxConnections ?? null,
        queueLength: 0,
        ejections: 0,
        ttfbP50: undefined,
        ttfbP99: undefined,
        firstByteTimeout: b.timeouts.first_byte,
        errorsByClass: {},
        requests: b.counters.requests,
      })),
    };
  }

  async close(): Promise<void> {
    await Promise.all(this.backends.map((b) => b.close()));
  }

  destroy(): void {
    for (const b of this.backends) b.destroy();
  }
}

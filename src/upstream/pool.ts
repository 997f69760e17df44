// The owner of a set of backends and their state. Choosing a backend goes through here; directors,
// health probes and ejection (the pools issue) plug in behind `choose`.
import type { Config } from '../config/schema.ts';
import { resolveTimeouts } from '../config/load.ts';
import { Backend } from './backend.ts';

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

  async close(): Promise<void> {
    await Promise.all(this.backends.map((b) => b.close()));
  }

  destroy(): void {
    for (const b of this.backends) b.destroy();
  }
}

// One origin server: its undici connection pool, its effective timeouts and its live counters.
// State belongs to its owner, the BackendPool (pool.ts); health and ejection hang off this object.
import { Pool } from 'undici';
import type { BackendConfig, TimeoutConfig } from '../config/schema.ts';

export type BackendOptions = { timeouts: TimeoutConfig; responseHeaderSize: number };

export class Backend {
  readonly name: string;
  readonly origin: string;
  readonly hostHeader: string | undefined;
  readonly weight: number;
  readonly zone: string | undefined;
  readonly maxConnections: number | undefined;
  readonly timeouts: TimeoutConfig;
  readonly dispatcher: Pool;
  /** Requests currently being fetched from this backend. */
  inflight = 0;
  /** Fetches started and failed, by outcome; read by the admin plane. */
  readonly counters = { requests: 0, failures: 0 };

  constructor(cfg: BackendConfig, opts: BackendOptions) {
    this.name = cfg.name;
    this.origin = new URL(cfg.url).origin;
    this.hostHeader = cfg.host_header;
    this.weight = cfg.weight;
    this.zone = cfg.zone;
    this.maxConnections = cfg.max_connections;
    this.timeouts = opts.timeouts;
    this.dispatcher = new Pool(this.origin, {
      connections: cfg.max_connections ?? null,
      pipelining: 1,
      connectTimeout: opts.timeouts.connect,
      headersTimeout: opts.timeouts.first_byte,
      bodyTimeout: opts.timeouts.between_bytes,
      // Idle sockets are closed before the origin closes them (the keep-alive race, FAILURES.md
      // connection_terminated): an origin `Keep-Alive: timeout=N` hint may lower our idle time, never raise it.
      keepAliveTimeout: opts.timeouts.idle,
      keepAliveMaxTimeout: opts.timeouts.idle,
      keepAliveTimeoutThreshold: 1000,
      maxHeaderSize: opts.responseHeaderSize,
    });
  }

  async close(): Promise<void> {
    await this.dispatcher.close().catch(() => undefined);
  }

  destroy(): void {
    void this.dispatcher.destroy().catch(() => undefined);
  }
}

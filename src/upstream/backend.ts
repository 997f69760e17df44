// One origin server: its undici connection pool, its effective timeouts, its connection slots (the
// learned concurrency limit under the `max_connections` cap, and its wait queue), its health, and its
// live counters.
// State belongs to its owner, the BackendPool (pool.ts); health and ejection hang off this object.
import { Client, Pool, type Dispatcher } from 'undici';
import type { BackendConfig, HealthConfig, OverloadConfig, ProbeConfig, TimeoutConfig } from '../config/schema.ts';
import { sectionDefaults } from './defaults.ts';
import { Gate } from './gate.ts';
import { ConcurrencyLimiter } from './limiter.ts';
import { BackendHealth } from './health/status.ts';

export type BackendOptions = { timeouts: TimeoutConfig; responseHeaderSize: number };

/** Recent time-to-first-byte samples kept per backend for the percentiles in failure reports. */
const TTFB_SAMPLES = 256;
/** Recent queue waits kept per backend (the admin plane shows their mean and maximum). */
const WAIT_SAMPLES = 128;

export class Backend {
  readonly name: string;
  readonly origin: string;
  readonly hostHeader: string | undefined;
  readonly weight: number;
  readonly zone: string | undefined;
  readonly maxConnections: number | undefined;
  readonly timeouts: TimeoutConfig;
  readonly dispatcher: Pool;
  /**
   * Connection slots: at most the learned limit (never above `max_connections`) requests at once, the
   * rest wait in a bounded FIFO queue. Replaced by the owning pool (its `overload` section).
   */
  slots: Gate;
  /** The learned concurrency limit (issue 9 item 4); attempts report their outcome to it. */
  limiter: ConcurrencyLimiter;
  /** Time spent waiting for a slot: totals since start (metrics) and recent samples (admin plane). */
  readonly queueWaits = { count: 0, totalMs: 0 };
  readonly #waits: number[] = [];
  #waitNext = 0;
  /** Probes, ejection, override, slow start. Replaced by the owning pool with its settings (`adopt`). */
  health: BackendHealth;
  /** Requests currently being fetched from this backend. */
  inflight = 0;
  /** Fetches started and failed, by outcome; read by the admin plane. */
  readonly counters = { requests: 0, failures: 0, staleKeepaliveRetries: 0, errorsByClass: {} as Record<string, number> };
  readonly #ttfb: number[] = [];
  #ttfbNext = 0;
  readonly #clientOptions: Pool.Options;

  constructor(cfg: BackendConfig, opts: BackendOptions) {
    this.name = cfg.name;
    this.origin = new URL(cfg.url).origin;
    this.hostHeader = cfg.host_header;
    this.weight = cfg.weight;
    this.zone = cfg.zone;
    this.maxConnections = cfg.max_connections;
    this.timeouts = opts.timeouts;
    this.#clientOptions = {
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
    };
    // No connection cap in undici: its pool would queue beyond the cap invisibly and without a deadline.
    // `slots` caps requests (pipelining 1: one request per socket, so it caps sockets too).
    this.dispatcher = new Pool(this.origin, { ...this.#clientOptions, connections: null });
    const d = sectionDefaults();
    this.health = new BackendHealth(d.health, d.probe);
    [this.limiter, this.slots] = this.#gate(d.overload);
  }

  /** Called by the pool that owns this backend: its health and queue settings apply. */
  adopt(health: HealthConfig, probe: ProbeConfig, overload: OverloadConfig): void {
    this.health = new BackendHealth(health, probe);
    [this.limiter, this.slots] = this.#gate(overload);
  }

  /** The learned limit under the explicit cap, and the queue in front of it. */
  #gate(overload: OverloadConfig): [ConcurrencyLimiter, Gate] {
    const limiter = new ConcurrencyLimiter(overload, this.maxConnections, () => gate.wake());
    const cap = this.maxConnections && this.maxConnections > 0 ? this.maxConnections : Infinity;
    const gate: Gate = new Gate(() => Math.min(limiter.limit, cap), overload.backend_queue);
    return [limiter, gate];
  }

  /** A request waited `ms` for a slot (0 when it got one at once), whether it got one or not. */
  recordQueueWait(ms: number): void {
    this.queueWaits.count++;
    this.queueWaits.totalMs += ms;
    this.#waits[this.#waitNext] = ms;
    this.#waitNext = (this.#waitNext + 1) % WAIT_SAMPLES;
  }

  /** Mean and maximum of the recent queue waits, ms. */
  recentQueueWait(): { meanMs: number; maxMs: number } {
    const w = this.#waits;
    if (w.length === 0) return { meanMs: 0, maxMs: 0 };
    let sum = 0;
    let max = 0;
    for (const v of w) {
      sum += v;
      if (v > max) max = v;
    }
    return { meanMs: sum / w.length, maxMs: max };
  }

  /** Requests holding or waiting for a slot: what least_connections compares. */
  get load(): number {
    return this.slots.active + this.slots.queued;
  }

  /**
   * The dispatcher for one attempt. `fresh`: a one-request client on a new connection, for the retry of
   * the keep-alive race — a second try on the pool could pick another idle socket the origin is closing
   * at the same moment. It closes itself once its one request is done.
   */
  dispatcherFor(fresh: boolean): Dispatcher {
    if (!fresh) return this.dispatcher;
    const client = new Client(this.origin, { ...this.#clientOptions, pipelining: 1 });
    // close() lets the queued request finish, then closes the socket.
    setImmediate(() => void client.close().catch(() => undefined));
    return client;
  }

  recordTtfb(ms: number): void {
    this.#ttfb[this.#ttfbNext] = ms;
    this.#ttfbNext = (this.#ttfbNext + 1) % TTFB_SAMPLES;
  }

  /** The p-th percentile (0..100) of recent time to first byte, ms. */
  ttfbPercentile(p: number): number | undefined {
    if (this.#ttfb.length === 0) return undefined;
    const sorted = [...this.#ttfb].sort((a, b) => a - b);
    return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
  }

  async close(): Promise<void> {
    await this.dispatcher.close().catch(() => undefined);
  }

  destroy(): void {
    void this.dispatcher.destroy().catch(() => undefined);
  }
}

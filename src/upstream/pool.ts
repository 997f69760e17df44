// The owner of a set of backends and their state. Choosing a backend goes through here: health (probes,
// ejection, the operator's override), zone preference, panic mode and connection caps narrow the
// candidates, then the pool's director (directors/) picks one. Attempts report back (`report`) so
// passive health sees every failure; the admin API changes overrides through `setOverride`.
// Issue 9: passive health never ejects the last healthy capacity (a pool of one is never ejected), a
// refused connection takes a backend out at once and a trial connect brings it back (half-open), and
// panic mode (on by default) forwards to the least-bad backends rather than fail every request.
import type { Config, DirectorKind, HealthConfig, OverloadConfig, PoolConfig, ProbeConfig, RetryConfig } from '../config/schema.ts';
import { resolveTimeouts } from '../config/load.ts';
import { Backend } from './backend.ts';
import { RetryBudget } from './budget.ts';
import { createDirector, type Director } from './directors/director.ts';
import { sectionDefaults } from './defaults.ts';
import { Gate } from './gate.ts';
import type { ErrorType } from '../errors.ts';
import type { EjectRefusal, Verdict } from './health/outlier.ts';
import { Prober, type ProbeResult } from './health/probe.ts';
import { trialConnect } from './health/trial.ts';
import type { BackendSnapshot, BackendState, HealthOverride, PoolSnapshot } from './state.ts';

export type PoolSettings = {
  director: DirectorKind;
  /** `url` or `header:<name>`. */
  hashKey: string;
  zone: string | undefined;
  health: HealthConfig;
  probe: ProbeConfig;
  retries: RetryConfig;
  overload: OverloadConfig;
};

/** Something an operator should hear about: a backend changed state, or a pool entered/left panic. */
export type PoolEvent =
  | { kind: 'state'; pool: string; backend: string; from: BackendState; to: BackendState; reason: string }
  | { kind: 'eject-refused'; pool: string; backend: string; why: EjectRefusal; failures: number; healthy: number; total: number }
  | { kind: 'panic'; pool: string; panic: boolean; healthy: number; total: number };

/**
 * The request facts the pool needs to choose (only `hash` reads the key). `allowPanic: false` when a stale
 * copy can answer instead: then panic mode does not send the request to a backend health says is sick.
 */
export type ChooseInput = { exclude?: ReadonlySet<Backend>; key?: string; allowPanic?: boolean };

/** Injectable for tests: the clock (ms) and the trial connect. */
export type PoolOptions = { now?: () => number; trialConnect?: (b: Backend) => Promise<boolean> };

export class BackendPool {
  readonly name: string;
  readonly backends: readonly Backend[];
  readonly settings: PoolSettings;
  readonly director: Director;
  readonly budget: RetryBudget;
  /** The pool-level concurrency cap (`overload.max_concurrency`) and its queue. */
  readonly admission: Gate;
  /** Listener for state changes and panic; set by the composition root (logs them). */
  onEvent: ((e: PoolEvent) => void) | undefined;
  #panic = false;
  /** Times the pool entered panic mode, for the admin plane and metrics. */
  panics = 0;
  /** Requests shed because the pool queue was full. */
  shed = 0;
  #probers: Prober[] = [];
  readonly #now: () => number;
  readonly #trialConnect: (b: Backend) => Promise<boolean>;
  /** Pending trial connects of backends out for refusing connections. */
  readonly #trials = new Map<Backend, NodeJS.Timeout>();
  /** When each backend's kept-in-rotation warning was last logged (at most one per `base_ejection`). */
  readonly #keptAnnounced = new Map<Backend, number>();
  #closed = false;

  constructor(name: string, backends: Backend[], settings: PoolSettings = defaultSettings(), opts: PoolOptions = {}) {
    this.name = name;
    this.backends = backends;
    this.settings = settings;
    this.#now = opts.now ?? Date.now;
    this.#trialConnect = opts.trialConnect ?? ((b) => trialConnect(b.origin, b.timeouts.connect));
    this.director = createDirector(settings.director);
    for (const b of backends) b.adopt(settings.health, settings.probe, settings.overload);
    this.budget = new RetryBudget({ percent: settings.retries.budget.percent, min: settings.retries.budget.min, windowMs: settings.retries.budget.window }, this.#now);
    this.admission = new Gate(settings.overload.max_concurrency, settings.overload.pool_queue);
  }

  /** The pool named `default`, from the top-level `backends:` list (empty when there is none). */
  static fromConfig(cfg: Config): BackendPool {
    return BackendPool.build(cfg, { name: 'default', director: 'round_robin', hash_key: 'url', backends: cfg.backends });
  }

  /** Every pool of the configuration by name: `default` (from `backends:`) and the `pools:` list. */
  static allFromConfig(cfg: Config): Map<string, BackendPool> {
    const out = new Map<string, BackendPool>();
    if (cfg.backends.length > 0) out.set('default', BackendPool.fromConfig(cfg));
    for (const p of cfg.pools) out.set(p.name, BackendPool.build(cfg, p));
    return out;
  }

  static build(cfg: Config, p: Pick<PoolConfig, 'name' | 'director' | 'hash_key' | 'backends'> & Partial<PoolConfig>): BackendPool {
    const settings: PoolSettings = {
      director: p.director,
      hashKey: p.hash_key,
      zone: p.zone,
      health: p.health ?? cfg.health,
      probe: p.probe ?? cfg.probes,
      retries: p.retries ?? cfg.retries,
      overload: p.overload ?? cfg.overload,
    };
    const backends = p.backends.map(
      (b) =>
        new Backend(b, { timeouts: resolveTimeouts(cfg, b), responseHeaderSize: cfg.limits.response_header_size }),
    );
    return new BackendPool(p.name, backends, settings);
  }

  /**
   * The backend for the next attempt, or undefined when none may take it (`destination_unavailable`).
   * Backends in `exclude` (already tried for this request) are skipped; a half-open backend gets its
   * one trial request; in panic mode health is ignored, the operator's `sick` and `drain` are not.
   */
  choose(input: ChooseInput | ReadonlySet<Backend> = {}): Backend | undefined {
    const { exclude, key, allowPanic } = input instanceof Set ? { exclude: input as ReadonlySet<Backend>, key: undefined, allowPanic: true } : (input as ChooseInput);
    const now = this.#now();
    let candidates = this.#candidates(exclude, now, allowPanic ?? true);
    if (this.director.skipsFull && candidates.length > 1) {
      // Spill to a backend with a free slot rather than queue behind a full one.
      const open = candidates.filter((b) => b.slots.open);
      if (open.length > 0) candidates = open;
    }
    if (candidates.length === 0) return undefined;
    const ramped = this.director.kind !== 'hash' && this.director.kind !== 'fallback';
    const weights = candidates.map((b) => (ramped ? b.weight * b.health.ramp(now) : b.weight));
    const chosen = candidates.length === 1 ? candidates[0]! : this.director.pick({ candidates, weights, key });
    if (chosen.health.state(now) === 'half-open') chosen.health.outlier.trial = true;
    return chosen;
  }

  /** Whether a backend outside `exclude` may take a request now (what a retry would need). */
  hasCandidate(exclude?: ReadonlySet<Backend>, allowPanic = true): boolean {
    return this.#candidates(exclude, this.#now(), allowPanic).length > 0;
  }

  /**
   * Backends that may take a request: by health, then the local zone if it has any. In panic, every backend
   * the operator has not set `sick` or `drain` — the least bad first: one that just refused a connection
   * is known to carry nothing and is chosen only when no other is left.
   */
  #candidates(exclude: ReadonlySet<Backend> | undefined, now: number, allowPanic: boolean): Backend[] {
    let candidates = this.backends.filter((b) => !exclude?.has(b) && b.health.choosable(now));
    if (this.#checkPanic(now) && allowPanic) {
      const all = this.backends.filter((b) => !exclude?.has(b) && b.health.override !== 'sick' && b.health.override !== 'drain');
      const listening = all.filter((b) => !(b.health.outlier.cause === 'refused' && b.health.outlier.phase(now) === 'ejected'));
      candidates = listening.length > 0 ? listening : all;
    }
    const zone = this.settings.zone;
    if (zone !== undefined) {
      const local = candidates.filter((b) => b.zone === zone);
      if (local.length > 0) candidates = local;
    }
    return candidates;
  }

  /**
   * What one attempt said about its backend: feeds passive health (ejection, half-open trials). `cause`:
   * the failure's class — a refused connection is decisive (the backend is out at once, a trial connect
   * brings it back).
   */
  report(b: Backend, verdict: Verdict, cause?: ErrorType): void {
    const now = this.#now();
    const before = b.health.state(now);
    const o = b.health.outlier;
    if (verdict === 'failure') {
      const decisive = cause === 'connection_refused';
      const r = o.failure(now, (d) => this.#mayEject(b, d, now), decisive);
      if (r.kind === 'ejected') {
        const why =
          o.cause === 'refused'
            ? `connection refused; out until a trial connect succeeds (every ${this.settings.health.trial_connect_interval}ms, at most ${o.ejectionMs}ms; ejection #${o.streak})`
            : `${this.settings.health.consecutive_failures} failures in a row; ejected for ${o.ejectionMs}ms (ejection #${o.streak})`;
        this.#announce(b, before, now, why);
        if (o.cause === 'refused') this.#scheduleTrial(b);
        return;
      }
      if (r.kind === 'kept' && r.first && this.#mayAnnounceKept(b, now)) this.onEvent?.({ kind: 'eject-refused', pool: this.name, backend: b.name, why: r.why, failures: o.consecutive, healthy: this.#healthyCount(now), total: this.backends.length });
    } else if (verdict === 'success') {
      o.success(now);
    } else if (o.trial) {
      o.release();
    }
    b.health.settle(before, now);
    this.#announce(b, before, now, before === 'half-open' ? 'trial request succeeded' : 'request outcome');
  }

  /**
   * The operator's override for one backend (the admin API calls this): `auto` follows probes and
   * passive health; `healthy` and `sick` force the state; `drain` takes no new requests while the ones
   * in flight finish. Returns the backend's new snapshot, or undefined when no backend has that name.
   */
  setOverride(backend: string, override: HealthOverride): BackendSnapshot | undefined {
    const b = this.backends.find((x) => x.name === backend);
    if (!b) return undefined;
    const now = this.#now();
    const before = b.health.state(now);
    b.health.override = override;
    b.health.settle(before, now);
    this.#announce(b, before, now, `operator override: ${override}`);
    return this.#backendSnapshot(b, now);
  }

  /** workers (issue 12): told of every result of this pool's own probes, so one worker can probe for all. */
  onProbe: ((backend: string, r: ProbeResult) => void) | undefined;

  /** Applies a probe result measured by another process (the probing worker); false for an unknown backend. */
  applyProbe(backend: string, r: ProbeResult): boolean {
    const b = this.backends.find((x) => x.name === backend);
    if (!b) return false;
    this.#probeResult(b, r);
    return true;
  }

  /** Stops the active probers only (trials of ejected backends go on): another process probes for this one. */
  stopActiveProbes(): void {
    for (const p of this.#probers) p.stop();
    this.#probers = [];
  }

  /** Starts the active probes (when the pool's probe settings enable them). */
  startProbes(): void {
    if (!this.settings.probe.enabled || this.#probers.length > 0) return;
    for (const b of this.backends) {
      const p = new Prober(this.settings.probe, { origin: b.origin, hostHeader: b.hostHeader }, (r) => {
        this.#probeResult(b, r);
        this.onProbe?.(b.name, r);
      });
      this.#probers.push(p);
      p.start();
    }
  }

  stopProbes(): void {
    for (const p of this.#probers) p.stop();
    this.#probers = [];
    for (const t of this.#trials.values()) clearTimeout(t);
    this.#trials.clear();
  }

  /** Probes sent so far, per backend name. */
  probesSent(): Record<string, number> {
    return Object.fromEntries(this.#probers.map((p, i) => [this.backends[i]!.name, p.sent]));
  }

  /** The request's hash key for the `hash` director: `url` (host + target) or a header's value. */
  hashKeyOf(host: string, target: string, headers: Record<string, string | string[] | undefined>): string | undefined {
    if (this.director.kind !== 'hash') return undefined;
    const k = this.settings.hashKey;
    if (k.startsWith('header:')) {
      const v = headers[k.slice(7).toLowerCase()];
      if (typeof v === 'string' && v !== '') return v;
      if (Array.isArray(v) && v.length > 0) return v.join(',');
    }
    return `${host.toLowerCase()}${target}`;
  }

  /** Health context for a failure report: healthy count n/m. */
  healthSummary(): { healthy: number; total: number } {
    const now = this.#now();
    return { healthy: this.#healthyCount(now), total: this.backends.length };
  }

  /** Whether the pool is in panic mode (as of the last choice). */
  get panic(): boolean {
    return this.#panic;
  }

  /** The facts a `destination_unavailable` report carries: every backend's state and probe history. */
  unavailableContext(): Record<string, unknown> {
    const now = this.#now();
    return {
      pool: this.name,
      healthy: `${this.#healthyCount(now)}/${this.backends.length}`,
      panic: this.#panic,
      backends: Object.fromEntries(
        this.backends.map((b) => {
          const h = b.health;
          const o = h.outlier;
          return [
            b.name,
            {
              state: h.state(now),
              ...(h.override !== 'auto' ? { override: h.override } : {}),
              ...(h.probes ? { probes: h.probes.pattern, probes_passed: `${h.probes.passed}/${h.probes.window} (threshold ${h.probes.threshold})`, last_probe_error: h.probes.lastError } : {}),
              ...(o.phase(now) !== 'in' ? { ejected_until: new Date(o.ejectedUntil).toISOString(), ejections: o.total } : {}),
            },
          ];
        }),
      ),
    };
  }

  /** State of every backend, for the admin plane and metrics. */
  snapshot(): PoolSnapshot {
    const now = this.#now();
    return {
      name: this.name,
      director: this.director.kind,
      healthy: this.#healthyCount(now),
      total: this.backends.length,
      panic: this.#panic,
      panics: this.panics,
      inflight: this.admission.active,
      maxConcurrency: Number.isFinite(this.admission.limit) ? this.admission.limit : null,
      queueLength: this.admission.queued,
      shed: this.shed,
      retryBudget: { spent: this.budget.spent(now), allowance: Math.floor(this.budget.allowance()), denied: this.budget.denied, free: this.budget.free },
      backends: this.backends.map((b) => this.#backendSnapshot(b, now)),
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.stopProbes();
    await Promise.all(this.backends.map((b) => b.close()));
  }

  destroy(): void {
    this.#closed = true;
    this.stopProbes();
    for (const b of this.backends) b.destroy();
  }

  #backendSnapshot(b: Backend, now: number): BackendSnapshot {
    const h = b.health;
    const o = h.outlier;
    return {
      pool: this.name,
      name: b.name,
      url: b.origin,
      zone: b.zone,
      weight: b.weight,
      state: h.state(now),
      override: h.override,
      probeWindow: h.probes?.pattern ?? '',
      lastProbeError: h.probes?.lastError,
      inflight: b.inflight,
      maxConnections: b.maxConnections ?? null,
      queueLength: b.slots.queued,
      ...limiterFacts(b),
      ejections: o.total,
      ejectedUntil: o.phase(now) === 'ejected' ? new Date(o.ejectedUntil).toISOString() : undefined,
      consecutiveFailures: o.consecutive,
      failures: o.failures,
      ...(o.kept > 0 ? { ejectionsRefused: o.kept, ejectionRefusedWhy: o.keptWhy } : {}),
      ...(o.phase(now) === 'ejected' ? { ejectionCause: o.cause } : {}),
      share: h.ramp(now),
      ttfbP50: b.ttfbPercentile(50),
      ttfbP99: b.ttfbPercentile(99),
      firstByteTimeout: b.timeouts.first_byte,
      errorsByClass: { ...b.counters.errorsByClass },
      requests: b.counters.requests,
    };
  }

  #healthyCount(now: number): number {
    let n = 0;
    for (const b of this.backends) if (b.health.state(now) === 'healthy') n++;
    return n;
  }

  /** Panic mode (Envoy's healthy_panic_threshold): too few healthy backends to trust the health checks. */
  #checkPanic(now: number): boolean {
    const threshold = this.settings.health.panic_threshold;
    const healthy = threshold > 0 ? this.#healthyCount(now) : this.backends.length;
    const panic = threshold > 0 && healthy / this.backends.length < threshold;
    if (panic !== this.#panic) {
      this.#panic = panic;
      if (panic) this.panics++;
      this.onEvent?.({ kind: 'panic', pool: this.name, panic, healthy, total: this.backends.length });
    }
    return panic;
  }

  /**
   * Whether passive health may take `b` out now, or why not. Never the last healthy capacity: some other
   * backend must stay healthy (so a pool of one is never ejected — issue 9: a few failing URLs must not
   * become an outage of every URL). Then max_ejection_percent (rounded down, at least one in a pool of
   * two or more), which a refused connection (`decisive`) bypasses: a backend nothing listens on carries
   * no load, so taking it out removes no capacity.
   */
  #mayEject(b: Backend, decisive: boolean, now: number): EjectRefusal | undefined {
    let othersHealthy = 0;
    let ejected = 0;
    for (const x of this.backends) {
      if (x === b) continue;
      if (x.health.state(now) === 'healthy') othersHealthy++;
      if (x.health.outlier.phase(now) !== 'in') ejected++;
    }
    if (othersHealthy === 0) return 'last-capacity';
    if (decisive) return undefined;
    const cap = Math.max(1, Math.floor((this.settings.health.max_ejection_percent / 100) * this.backends.length));
    return ejected < cap ? undefined : 'max-ejection-percent';
  }

  /** A URL that always fails among good ones starts a new run of failures often: warn once per base_ejection. */
  #mayAnnounceKept(b: Backend, now: number): boolean {
    const last = this.#keptAnnounced.get(b);
    if (last !== undefined && now - last < this.settings.health.base_ejection) return false;
    this.#keptAnnounced.set(b, now);
    return true;
  }

  /** Item 3 of issue 9: a backend out for refusing connections is tried with a bare connect until one opens. */
  #scheduleTrial(b: Backend): void {
    const every = this.settings.health.trial_connect_interval;
    if (this.#closed || this.#trials.has(b) || !(every > 0)) return;
    const t = setTimeout(() => void this.#trial(b), every);
    t.unref();
    this.#trials.set(b, t);
  }

  async #trial(b: Backend): Promise<void> {
    const o = b.health.outlier;
    const out = () => o.cause === 'refused' && o.phase(this.#now()) === 'ejected';
    if (!out()) return void this.#trials.delete(b);
    const ok = await this.#trialConnect(b);
    this.#trials.delete(b);
    if (this.#closed || !out()) return;
    if (!ok) return this.#scheduleTrial(b);
    const now = this.#now();
    const before = b.health.state(now);
    o.reopen(now);
    this.#announce(b, before, now, 'trial connect succeeded; one trial request next');
  }

  #probeResult(b: Backend, r: ProbeResult): void {
    const now = this.#now();
    const before = b.health.state(now);
    b.health.probe(r);
    b.health.settle(before, now);
    const p = b.health.probes!;
    this.#announce(b, before, now, `probes ${p.pattern}: ${p.passed}/${p.window} passed, threshold ${p.threshold}${r.ok ? '' : `; last error: ${r.error}`}`);
  }

  #announce(b: Backend, before: BackendState, now: number, reason: string): void {
    const after = b.health.state(now);
    if (after !== before) this.onEvent?.({ kind: 'state', pool: this.name, backend: b.name, from: before, to: after, reason });
  }
}

/** The backend's concurrency limit and queue waits, for the admin plane and metrics. */
function limiterFacts(b: Backend): Pick<BackendSnapshot, 'concurrencyLimit' | 'adaptive' | 'queueWaits'> {
  const limit = b.slots.limit;
  const recent = b.recentQueueWait();
  return {
    concurrencyLimit: Number.isFinite(limit) ? limit : null,
    adaptive: b.limiter.adaptive,
    queueWaits: { count: b.queueWaits.count, totalMs: b.queueWaits.totalMs, recentMeanMs: recent.meanMs, recentMaxMs: recent.maxMs },
  };
}

function defaultSettings(): PoolSettings {
  const d = sectionDefaults();
  return { director: 'round_robin', hashKey: 'url', zone: undefined, health: d.health, probe: d.probe, retries: d.retries, overload: d.overload };
}

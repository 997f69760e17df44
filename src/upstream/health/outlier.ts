// Passive health (Envoy's outlier detection): consecutive failed requests eject a backend for a time that
// grows with every ejection in a row (base × n, capped); when it ends the backend is half-open — exactly
// one trial request goes to it — and only a successful trial gives it full traffic back (a failed one
// ejects it again, for longer). A refused connection is decisive: one ejects at once, and a trial connect
// (pool.ts) ends the ejection early. The pool decides whether an ejection is allowed: never the last
// healthy capacity, and within max_ejection_percent.
import type { HealthConfig } from '../../config/schema.ts';
import { isBackendFault, type ErrorType } from '../../errors.ts';

/** What an attempt said about its backend. `neutral`: nothing (client left, our own queue was full). */
export type Verdict = 'success' | 'failure' | 'neutral';

/**
 * The verdict of one attempt. The keep-alive race (a reused socket closed under us) is the proxy's
 * idle timeout, not the backend failing; `connection_limit_reached` is our own cap.
 */
export function verdictOf(outcome: { error?: { type: ErrorType; reused?: boolean; source: string }; status?: number }, failureStatuses: readonly number[]): Verdict {
  const e = outcome.error;
  if (e) {
    if (e.source === 'downstream') return 'neutral';
    if (e.type === 'connection_terminated' && e.reused) return 'neutral';
    return isBackendFault(e.type) ? 'failure' : 'neutral'; // the one table: errors.ts ERROR_CLASSES
  }
  if (outcome.status === undefined) return 'neutral';
  return failureStatuses.includes(outcome.status) ? 'failure' : 'success';
}

export type OutlierPhase = 'in' | 'ejected' | 'half-open';

/** Why the current (or last) ejection happened: failures in a row, or one refused connection (decisive). */
export type EjectionCause = 'failures' | 'refused';

/**
 * Why the pool kept a backend in that passive health wanted out: `last-capacity` — no other backend of the
 * pool is healthy, so ejecting it would turn some failing requests into an outage of every request (nginx's
 * `max_fails` cascade); `max-ejection-percent` — enough of the pool is ejected already.
 */
export type EjectRefusal = 'last-capacity' | 'max-ejection-percent';

/** What one failure did: ejected the backend, only counted, or met the pool's refusal to eject. */
export type FailureOutcome = { kind: 'ejected' } | { kind: 'counted' } | { kind: 'kept'; why: EjectRefusal; /** first refusal of this run of failures */ first: boolean };

export class Outlier {
  readonly #cfg: HealthConfig;
  /** Failures in a row. */
  consecutive = 0;
  /** Every failure passive health saw since start, for the admin plane. */
  failures = 0;
  /** Ejections in a row (the multiplier of the ejection time); reset after max_ejection of good health. */
  streak = 0;
  /** All ejections since start, for the admin plane. */
  total = 0;
  /** Ejections the pool refused (see EjectRefusal), and the last reason, for the admin plane. */
  kept = 0;
  keptWhy: EjectRefusal | undefined;
  ejectedUntil = 0;
  cause: EjectionCause = 'failures';
  /** The pool refused an ejection during the current run of failures (it is reported once per run). */
  #keptThisRun = false;
  /** Half-open: the trial request is in flight. */
  trial = false;
  #lastEjectedAt = 0;

  constructor(cfg: HealthConfig) {
    this.#cfg = cfg;
  }

  phase(now: number): OutlierPhase {
    if (this.ejectedUntil === 0) return 'in';
    return now < this.ejectedUntil ? 'ejected' : 'half-open';
  }

  /**
   * Counts a failure; ejects when failures in a row reached the limit — or at once when `decisive` (a refused
   * connection: nothing listens, so the backend carries nothing) — and the pool allows it (`mayEject` returns
   * why not, or undefined).
   */
  failure(now: number, mayEject: (decisive: boolean) => EjectRefusal | undefined, decisive = false): FailureOutcome {
    this.consecutive++;
    this.failures++;
    const phase = this.phase(now);
    if (phase === 'half-open') {
      // The trial failed: straight back out, for longer. It carried no traffic, so no capacity is lost.
      this.trial = false;
      this.#eject(now, decisive ? 'refused' : this.cause);
      return { kind: 'ejected' };
    }
    const limit = this.#cfg.consecutive_failures;
    if (phase === 'ejected' || limit === 0) return { kind: 'counted' };
    if (!decisive && this.consecutive < limit) return { kind: 'counted' };
    const why = mayEject(decisive);
    if (why) {
      const first = !this.#keptThisRun;
      this.#keptThisRun = true;
      this.kept++;
      this.keptWhy = why;
      return { kind: 'kept', why, first };
    }
    this.#eject(now, decisive ? 'refused' : 'failures');
    return { kind: 'ejected' };
  }

  /** Returns true when this success ended a half-open trial (the backend is back in). */
  success(now: number): boolean {
    this.consecutive = 0;
    this.#keptThisRun = false;
    if (this.phase(now) !== 'half-open') return false;
    this.trial = false;
    this.ejectedUntil = 0;
    return true;
  }

  /** A trial connect succeeded: the ejection ends now and the backend is half-open (one trial request). */
  reopen(now: number): void {
    if (this.phase(now) === 'ejected') this.ejectedUntil = now;
  }

  /** The trial ended without a verdict (client left): another request may try. */
  release(): void {
    this.trial = false;
  }

  /** Length of the current (or last) ejection, ms. */
  get ejectionMs(): number {
    return Math.min(this.#cfg.base_ejection * Math.max(1, this.streak), this.#cfg.max_ejection);
  }

  #eject(now: number, cause: EjectionCause): void {
    // Envoy: the multiplier decays once the backend has behaved for a while.
    if (this.#lastEjectedAt && now - this.#lastEjectedAt > this.#cfg.max_ejection + this.ejectionMs) this.streak = 0;
    this.streak++;
    this.total++;
    this.cause = cause;
    this.#lastEjectedAt = now;
    this.ejectedUntil = now + this.ejectionMs;
    this.consecutive = 0;
    this.#keptThisRun = false;
  }
}

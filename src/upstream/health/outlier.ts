// Passive health (Envoy's outlier detection): consecutive failed requests eject a backend for a time that
// grows with every ejection in a row (base × n, capped); when it ends the backend is half-open — exactly
// one trial request goes to it — and only a successful trial gives it full traffic back (a failed one
// ejects it again, for longer). The pool decides whether an ejection is allowed (max_ejection_percent).
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

export class Outlier {
  readonly #cfg: HealthConfig;
  /** Failures in a row. */
  consecutive = 0;
  /** Ejections in a row (the multiplier of the ejection time); reset after max_ejection of good health. */
  streak = 0;
  /** All ejections since start, for the admin plane. */
  total = 0;
  ejectedUntil = 0;
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

  /** Ejects when failures in a row reached the limit and the pool allows it; returns whether it did. */
  failure(now: number, mayEject: () => boolean): boolean {
    this.consecutive++;
    const phase = this.phase(now);
    if (phase === 'half-open') {
      // The trial failed: straight back out, for longer.
      this.trial = false;
      this.#eject(now);
      return true;
    }
    if (phase === 'ejected' || this.#cfg.consecutive_failures === 0) return false;
    if (this.consecutive < this.#cfg.consecutive_failures || !mayEject()) return false;
    this.#eject(now);
    return true;
  }

  /** Returns true when this success ended a half-open trial (the backend is back in). */
  success(now: number): boolean {
    this.consecutive = 0;
    if (this.phase(now) !== 'half-open') return false;
    this.trial = false;
    this.ejectedUntil = 0;
    return true;
  }

  /** The trial ended without a verdict (client left): another request may try. */
  release(): void {
    this.trial = false;
  }

  /** Length of the current (or last) ejection, ms. */
  get ejectionMs(): number {
    return Math.min(this.#cfg.base_ejection * Math.max(1, this.streak), this.#cfg.max_ejection);
  }

  #eject(now: number): void {
    // Envoy: the multiplier decays once the backend has behaved for a while.
    if (this.#lastEjectedAt && now - this.#lastEjectedAt > this.#cfg.max_ejection + this.ejectionMs) this.streak = 0;
    this.streak++;
    this.total++;
    this.#lastEjectedAt = now;
    this.ejectedUntil = now + this.ejectionMs;
    this.consecutive = 0;
  }
}

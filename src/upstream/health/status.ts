// One backend's health, from its three sources: the operator's override, the active probes and passive
// outlier detection; and slow start, the ramp of its share after it becomes healthy again.
// The result is a BackendState (state.ts), the closed union everyone else reads.
import type { HealthConfig, ProbeConfig } from '../../config/schema.ts';
import type { BackendState, HealthOverride } from '../state.ts';
import { Outlier } from './outlier.ts';
import { ProbeWindow, type ProbeResult } from './probe.ts';

/** Share of its weight a backend gets at the very start of slow start (Envoy's min_weight_percent). */
const SLOW_START_FLOOR = 0.1;

export class BackendHealth {
  readonly #cfg: HealthConfig;
  readonly probes: ProbeWindow | undefined;
  readonly outlier: Outlier;
  override: HealthOverride = 'auto';
  /** When the backend last became healthy after not being so (slow start counts from here). */
  healthySince = Number.NEGATIVE_INFINITY;

  constructor(health: HealthConfig, probe: ProbeConfig) {
    this.#cfg = health;
    this.probes = probe.enabled ? new ProbeWindow(probe) : undefined;
    this.outlier = new Outlier(health);
  }

  state(now: number): BackendState {
    switch (this.override) {
      case 'sick':
        return 'sick';
      case 'drain':
        return 'draining';
      case 'healthy':
        return 'healthy';
      case 'auto':
        break;
    }
    if (this.probes && !this.probes.healthy) return 'sick';
    const phase = this.outlier.phase(now);
    return phase === 'in' ? 'healthy' : phase;
  }

  /** May take a new request now (a half-open backend takes one trial at a time). */
  choosable(now: number): boolean {
    const s = this.state(now);
    return s === 'healthy' || (s === 'half-open' && !this.outlier.trial);
  }

  /** Slow-start factor of its weight, in (0, 1]. */
  ramp(now: number): number {
    const ms = this.#cfg.slow_start;
    if (!(ms > 0)) return 1;
    const t = (now - this.healthySince) / ms;
    return t >= 1 ? 1 : Math.max(SLOW_START_FLOOR, t);
  }

  /** Records a probe result; the state before and after tell the pool whether to announce a change. */
  probe(r: ProbeResult): void {
    this.probes?.record(r);
  }

  /** Call after any event that may have made the backend healthy, with the state before it. */
  settle(before: BackendState, now: number): void {
    if (before !== 'healthy' && this.state(now) === 'healthy') this.healthySince = now;
  }
}

// The director interface (Varnish's term): given the backends that may take a request now, pick one.
// One small interface, one file per strategy (STYLE habit 6); the pool filters by health, zone,
// exclusion and capacity before a director sees the candidates, so directors know nothing of health.
import type { DirectorKind } from '../../config/schema.ts';
import type { Backend } from '../backend.ts';
import { FallbackDirector } from './fallback.ts';
import { HashDirector } from './hash.ts';
import { LeastConnectionsDirector } from './least-connections.ts';
import { RandomDirector } from './random.ts';
import { RoundRobinDirector } from './round-robin.ts';

export type PickInput = {
  /** Backends that may take the request, in the pool's configured order; never empty. */
  candidates: readonly Backend[];
  /** Effective weight of each candidate (its `weight` × slow-start ramp), same order, > 0. */
  weights: readonly number[];
  /** The request's hash key (only the `hash` director reads it). */
  key: string | undefined;
};

export interface Director {
  readonly kind: DirectorKind;
  /** Whether the pool may skip a candidate at its connection cap (false when the choice must be stable). */
  readonly skipsFull: boolean;
  pick(i: PickInput): Backend;
}

export function createDirector(kind: DirectorKind): Director {
  switch (kind) {
    case 'round_robin':
      return new RoundRobinDirector();
    case 'random':
      return new RandomDirector();
    case 'least_connections':
      return new LeastConnectionsDirector();
    case 'hash':
      return new HashDirector();
    case 'fallback':
      return new FallbackDirector();
  }
}

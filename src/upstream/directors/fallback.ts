// Fallback (Varnish's fallback director): the first candidate in the configured order. Later backends
// are standby: they take traffic only while every earlier one is sick, ejected, drained or already tried.
import type { Backend } from '../backend.ts';
import type { Director, PickInput } from './director.ts';

export class FallbackDirector implements Director {
  readonly kind = 'fallback' as const;
  /** A primary at its cap queues rather than spilling onto the standby. */
  readonly skipsFull = false;

  pick({ candidates }: PickInput): Backend {
    return candidates[0]!;
  }
}

// Weighted random: each candidate with probability weight / total. Stateless, so it spreads load evenly
// across many Lacquer instances without coordination.
import type { Backend } from '../backend.ts';
import type { Director, PickInput } from './director.ts';

export class RandomDirector implements Director {
  readonly kind = 'random' as const;
  readonly skipsFull = true;

  pick({ candidates, weights }: PickInput): Backend {
    let total = 0;
    for (const w of weights) total += w;
    let r = Math.random() * total;
    for (let i = 0; i < candidates.length; i++) {
      r -= weights[i]!;
      if (r < 0) return candidates[i]!;
    }
    return candidates[candidates.length - 1]!;
  }
}

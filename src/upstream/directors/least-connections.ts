// Weighted least connections: the candidate with the fewest requests in flight or waiting per unit of
// weight. Ties are broken at random, so idle backends share the first requests instead of the first
// listed backend taking them all.
import type { Backend } from '../backend.ts';
import type { Director, PickInput } from './director.ts';

export class LeastConnectionsDirector implements Director {
  readonly kind = 'least_connections' as const;
  readonly skipsFull = true;

  pick({ candidates, weights }: PickInput): Backend {
    let best = Infinity;
    let ties = 0;
    let chosen = candidates[0]!;
    for (let i = 0; i < candidates.length; i++) {
      const b = candidates[i]!;
      const score = (b.load + 1) / weights[i]!;
      if (score < best) {
        best = score;
        chosen = b;
        ties = 1;
      } else if (score === best && Math.random() * ++ties < 1) {
        chosen = b; // reservoir sampling: each tied candidate with probability 1/ties
      }
    }
    return chosen;
  }
}

// Smooth weighted round robin (nginx, ngx_http_upstream_round_robin.c): every pick adds each candidate's
// weight to its running score, takes the highest and subtracts the total from it. Weights 5:1:1 give
// a a b a c a a — interleaved, not bursts — and a weight that changes (slow start) takes effect at once.
import type { Backend } from '../backend.ts';
import type { Director, PickInput } from './director.ts';

export class RoundRobinDirector implements Director {
  readonly kind = 'round_robin' as const;
  readonly skipsFull = true;
  readonly #current = new Map<Backend, number>();

  pick({ candidates, weights }: PickInput): Backend {
    let total = 0;
    let best = 0;
    let bestScore = -Infinity;
    for (let i = 0; i < candidates.length; i++) {
      const b = candidates[i]!;
      const w = weights[i]!;
      total += w;
      const score = (this.#current.get(b) ?? 0) + w;
      this.#current.set(b, score);
      if (score > bestScore) {
        bestScore = score;
        best = i;
      }
    }
    const chosen = candidates[best]!;
    this.#current.set(chosen, bestScore - total);
    return chosen;
  }
}

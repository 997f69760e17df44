// Consistent hashing by rendezvous (highest random weight, Thaler & Ravishankar 1996): each candidate
// scores hash(key, backend) and the highest wins. When a backend leaves, only the keys it held move
// (to their second choice), ≈ 1/n of them, and no ring of virtual nodes is needed; O(n) per pick is
// cheap for pools of tens of backends. Weighted with the logarithmic method (score = -w / ln u), which
// keeps both the weights and the minimal-reshuffle property.
import type { Backend } from '../backend.ts';
import type { Director, PickInput } from './director.ts';

/** FNV-1a, 32 bit: fast and good enough once finalised by `mix`. */
export function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** MurmurHash3's 32-bit finaliser: every input bit affects every output bit. */
function mix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A uniform number in (0, 1) for the pair (key, backend). */
export function pairUniform(keyHash: number, backendHash: number): number {
  const h = mix((keyHash ^ Math.imul(backendHash, 0x9e3779b1)) >>> 0);
  return (h + 1) / 4294967297;
}

export class HashDirector implements Director {
  readonly kind = 'hash' as const;
  /** A key must stay on its backend (that is the point): queue for it rather than spill elsewhere. */
  readonly skipsFull = false;
  readonly #names = new WeakMap<Backend, number>();

  pick({ candidates, weights, key }: PickInput): Backend {
    const k = fnv1a(key ?? '');
    let best = -Infinity;
    let chosen = candidates[0]!;
    for (let i = 0; i < candidates.length; i++) {
      const b = candidates[i]!;
      let bh = this.#names.get(b);
      if (bh === undefined) {
        bh = fnv1a(b.name);
        this.#names.set(b, bh);
      }
      const score = -weights[i]! / Math.log(pairUniform(k, bh));
      if (score > best) {
        best = score;
        chosen = b;
      }
    }
    return chosen;
  }
}

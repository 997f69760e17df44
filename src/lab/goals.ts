// Issue 6's goals, judged on measured results: zero client-visible errors (scenarios 1, 2, 4, 7, 8),
// fewer errors than the best-configured peer (3, 6), exactly one origin request for the herd (5), and
// no corrupted body ever, anywhere.
import type { RunResult } from './runner.ts';

export type Verdict = { met: boolean | undefined; text: string };

/** Errors of the best peer among the tuned Varnish / nginx runs of the same scenario, if any ran. */
function bestPeer(peers: readonly RunResult[]): RunResult | undefined {
  return peers
    .filter((p) => p.target.kind !== 'lacquer' && p.target.variant === 'tuned')
    .sort((a, b) => a.summary.errors - b.summary.errors)[0];
}

export function judge(r: RunResult, peers: readonly RunResult[] = []): Verdict {
  const corrupt = r.summary.corrupted;
  if (corrupt > 0) return { met: false, text: `${corrupt} corrupted bodies served` };
  switch (r.goal) {
    case 'zero-errors':
      return r.summary.errors === 0
        ? { met: true, text: 'zero client-visible errors, no corrupted body' }
        : { met: false, text: `${r.summary.errors} client-visible errors (goal: 0)` };
    case 'one-origin-request': {
      const w = Object.entries(r.origin.watched)[0];
      const n = w ? w[1].duringFault : r.origin.duringFault;
      return n === 1
        ? { met: true, text: `exactly one origin request for ${w?.[0] ?? 'the object'} after expiry` }
        : { met: false, text: `${n} origin requests for ${w?.[0] ?? 'the object'} after expiry (goal: 1)` };
    }
    case 'fewer-errors-than-peers': {
      const best = bestPeer(peers);
      if (!best) return { met: undefined, text: `${r.summary.errors} errors; no tuned peer ran to compare with` };
      const mine = r.summary.errors;
      const theirs = best.summary.errors;
      if (mine < theirs || mine === 0) return { met: true, text: `${mine} errors vs ${theirs} for ${best.target.label}` };
      return { met: false, text: `${mine} errors vs ${theirs} for ${best.target.label} (goal: fewer)` };
    }
  }
}

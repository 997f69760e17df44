// Joins a context to its coordinator: local invalidations go out, other processes' come in.
import type { Logger } from 'pino';
import type { ProxyContext } from '../pipeline/context.ts';

/** Wires the invalidator of the (reload-carried) context to the coordinator; returns the detach function. */
export function attachCoordinator(ctx: () => ProxyContext, log: Logger): () => void {
  const { coord, invalidator } = ctx();
  if (!coord.shared) return () => undefined;
  invalidator.onInvalidate = (inv) => void coord.publish({ kind: 'invalidate', inv });
  const unsubscribe = coord.subscribe((m) => {
    const c = ctx();
    if (m.kind === 'invalidate') {
      try {
        c.invalidator.applyRemote(m.inv);
      } catch (err) {
        // A ban whose pattern this version cannot compile: drop everything rather than serve what it banned.
        log.error({ type: 'fleet', inv: m.inv, err: (err as Error).message }, 'fleet: invalidation could not be applied; local cache dropped');
        c.invalidator.applyRemote({ op: 'all', mode: 'hard' });
      }
    } else if (m.kind === 'reset') {
      const n = c.invalidator.applyRemote({ op: 'all', mode: 'hard' });
      log.warn({ type: 'fleet', reason: m.reason, objects: n }, `fleet: invalidations missed (${m.reason}); local cache dropped (${n} objects)`);
    }
  });
  return () => {
    unsubscribe();
    invalidator.onInvalidate = undefined;
  };
}

// The single-process coordinator: nothing is shared. In-process coalescing (pipeline/coalesce.ts) and the
// local Invalidator do all the work; this answers "nothing shared" at once so the pipeline can skip it.
import { randomUUID } from 'node:crypto';
import type { CoordMessage, CoordStatus, Coordinator, LockResult, SharedObject, UnlockWait } from './types.ts';

const DONE = Promise.resolve();

export class LocalCoordinator implements Coordinator {
  readonly id = randomUUID();
  readonly shared = false;
  readonly maxObjectBytes = 0;

  lookup(): Promise<SharedObject | undefined> {
    return Promise.resolve(undefined);
  }

  put(): void {}

  lock(key: string): Promise<LockResult> {
    // Alone, every lock is ours: the in-process Coalescer already made this request the only fetcher.
    return Promise.resolve({ kind: 'acquired', lock: { key, release() {} } });
  }

  waitUnlocked(): Promise<UnlockWait> {
    return Promise.resolve('expired');
  }

  publish(_m: CoordMessage): Promise<void> {
    return DONE;
  }

  subscribe(): () => void {
    return () => undefined;
  }

  status(): CoordStatus {
    return { state: 'local', errors: {} };
  }

  close(): Promise<void> {
    return DONE;
  }
}

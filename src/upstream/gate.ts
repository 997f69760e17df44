// A concurrency cap with a bounded FIFO wait queue: a backend's `max_connections`, a pool's
// `max_concurrency`. Hand-written because undici's pool queues without bound and without telling anyone
// (habit: no invisible queues); here every waiter has a deadline, gives up when its client leaves, and
// the queue length is visible to the admin plane.

/** How a wait for a slot ended. `full`: the queue was full, nobody waited. */
export type Grant =
  | { kind: 'ok'; waitedMs: number; release(): void }
  | { kind: 'full' }
  | { kind: 'timeout'; waitedMs: number }
  | { kind: 'gone' };

type Waiter = { resolve(g: Grant): void; since: number };

export class Gate {
  /** Most holders at once; Infinity = no cap. */
  readonly limit: number;
  /** Most waiters at once. */
  readonly maxQueue: number;
  #active = 0;
  readonly #queue: Waiter[] = [];

  constructor(limit: number, maxQueue: number) {
    this.limit = limit > 0 ? limit : Infinity;
    this.maxQueue = maxQueue;
  }

  get active(): number {
    return this.#active;
  }

  get queued(): number {
    return this.#queue.length;
  }

  /** A slot is free right now. */
  get open(): boolean {
    return this.#active < this.limit;
  }

  /**
   * Takes a slot now, or waits for one at most `timeoutMs`. `onGone` subscribes to the client leaving
   * (returns an unsubscribe): a waiter whose client left gives its place up at once.
   */
  acquire(timeoutMs: number, onGone?: (cb: () => void) => () => void): Grant | Promise<Grant> {
    if (this.#active < this.limit && this.#queue.length === 0) return this.#take(0);
    if (this.#queue.length >= this.maxQueue) return { kind: 'full' };
    return new Promise<Grant>((resolve) => {
      const since = performance.now();
      let settled = false;
      const waiter: Waiter = {
        since,
        resolve: (g) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          unsubscribe?.();
          resolve(g);
        },
      };
      const leave = (g: Grant) => {
        const i = this.#queue.indexOf(waiter);
        if (i >= 0) this.#queue.splice(i, 1);
        waiter.resolve(g);
      };
      const timer = setTimeout(() => leave({ kind: 'timeout', waitedMs: performance.now() - since }), timeoutMs);
      const unsubscribe = onGone?.(() => leave({ kind: 'gone' }));
      this.#queue.push(waiter);
    });
  }

  #take(waitedMs: number): Grant {
    this.#active++;
    let released = false;
    return {
      kind: 'ok',
      waitedMs,
      release: () => {
        if (released) return;
        released = true;
        this.#active--;
        this.#wake();
      },
    };
  }

  #wake(): void {
    while (this.#active < this.limit && this.#queue.length > 0) {
      const w = this.#queue.shift()!;
      w.resolve(this.#take(performance.now() - w.since));
    }
  }
}

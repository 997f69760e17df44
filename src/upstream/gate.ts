// A concurrency cap with a bounded FIFO wait queue: a backend's learned limit (limiter.ts) under its
// `max_connections`, a pool's `max_concurrency`. Hand-written because undici's pool queues without bound and without telling anyone
// (habit: no invisible queues); here every waiter has a deadline, gives up when its client leaves, and
// the queue length is visible to the admin plane.

/** How a wait for a slot ended. `full`: the queue was full, nobody waited; `busy`: no free slot and the caller would not wait. */
export type Grant =
  | { kind: 'ok'; waitedMs: number; release(): void }
  | { kind: 'full' }
  | { kind: 'busy' }
  | { kind: 'timeout'; waitedMs: number }
  | { kind: 'gone' };

type Waiter = { resolve(g: Grant): void; since: number };

export class Gate {
  /** Most waiters at once. */
  readonly maxQueue: number;
  readonly #limit: () => number;
  #active = 0;
  readonly #queue: Waiter[] = [];

  /** `limit`: a fixed cap (0 = none) or a function read at every decision (a learned limit). */
  constructor(limit: number | (() => number), maxQueue: number) {
    const fixed = typeof limit === 'number' ? (limit > 0 ? limit : Infinity) : undefined;
    this.#limit = fixed !== undefined ? () => fixed : (limit as () => number);
    this.maxQueue = maxQueue;
  }

  /** Most holders at once now; Infinity = no cap. */
  get limit(): number {
    return this.#limit();
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
   * (returns an unsubscribe): a waiter whose client left gives its place up at once. `noWait`: answer
   * `busy` instead of queueing (the caller has something better to do than wait, e.g. a stale copy).
   */
  acquire(timeoutMs: number, onGone?: (cb: () => void) => () => void, noWait = false): Grant | Promise<Grant> {
    if (this.#active < this.limit && this.#queue.length === 0) return this.#take(0);
    if (noWait) return { kind: 'busy' };
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

  /** Lets waiters in after the limit grew. */
  wake(): void {
    this.#wake();
  }

  #wake(): void {
    while (this.#active < this.limit && this.#queue.length > 0) {
      const w = this.#queue.shift()!;
      w.resolve(this.#take(performance.now() - w.since));
    }
  }
}

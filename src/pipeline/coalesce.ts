// Request coalescing: concurrent misses for one key make one origin request; the others wait for its
// result (bounded by cache.coalesce_wait) and are released together, like Pingora's cache lock
// (pingora-cache/src/lock.rs): a failed leader releases its waiters with its error, an uncacheable answer
// releases them to fetch on their own.
import type { CachedObject } from '../cache/object.ts';
import type { ProxyError } from '../errors.ts';

export type FlightResult =
  /** A complete response; `stored` says whether it went into the cache. Waiters deliver it if their Vary matches. */
  | { kind: 'object'; object: CachedObject; stored: boolean }
  /** The answer may not be shared: waiters fetch on their own. */
  | { kind: 'uncacheable' }
  /** The leader failed: waiters serve their stale copy or the same explained error. */
  | { kind: 'error'; error: ProxyError };

export type WaitResult = FlightResult | { kind: 'timeout' } | { kind: 'gone' };

export class Flight {
  readonly key: string;
  waiters = 0;
  settled = false;
  readonly result: Promise<FlightResult>;
  #resolve!: (r: FlightResult) => void;
  readonly #owner: Coalescer;

  constructor(key: string, owner: Coalescer) {
    this.key = key;
    this.#owner = owner;
    this.result = new Promise((resolve) => (this.#resolve = resolve));
  }

  settle(r: FlightResult): void {
    if (this.settled) return;
    this.settled = true;
    this.#owner.forget(this);
    this.#resolve(r);
  }
}

export class Coalescer {
  readonly #flights = new Map<string, Flight>();
  /** Requests that joined another's fetch, for the metrics. */
  collapsed = 0;

  get(key: string): Flight | undefined {
    return this.#flights.get(key);
  }

  lead(key: string): Flight {
    const f = new Flight(key, this);
    this.#flights.set(key, f);
    return f;
  }

  forget(f: Flight): void {
    if (this.#flights.get(f.key) === f) this.#flights.delete(f.key);
  }

  get size(): number {
    return this.#flights.size;
  }

  /** Waits for a flight's result, at most `ms`, giving up early when `gone` fires (the client left). */
  wait(f: Flight, ms: number, onGone: (cb: () => void) => () => void): Promise<WaitResult> {
    f.waiters++;
    this.collapsed++;
    return new Promise<WaitResult>((resolve) => {
      let finished = false;
      const finish = (r: WaitResult) => {
        if (finished) return;
        finished = true;
        f.waiters--;
        clearTimeout(timer);
        unsubscribe();
        resolve(r);
      };
      const timer = setTimeout(() => finish({ kind: 'timeout' }), ms);
      const unsubscribe = onGone(() => finish({ kind: 'gone' }));
      f.result.then(finish);
    });
  }
}

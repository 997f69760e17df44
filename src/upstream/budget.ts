// The retry budget of a pool (Finagle's RetryBudget, Envoy's retry_budget): over a sliding window,
// retries may add at most `percent` on top of the regular requests, plus a small fixed minimum so a
// quiet pool can still retry. During a total outage every request fails and would be retried `max`
// times; the budget keeps that from multiplying the load on an origin that is trying to come back.
// The budget is of load, not of attempts (issue 9 item 2): a retry after a failure that put no work on
// any origin (pipeline/retry.ts `addedNoOriginLoad`) takes nothing from it and is only counted (`free`),
// so a restarting backend refusing a third of the requests cannot starve the retries that hide it.

/** Buckets per window: the window slides in steps of window/BUCKETS. */
const BUCKETS = 10;

export type BudgetOptions = { percent: number; min: number; windowMs: number };

export class RetryBudget {
  readonly #opts: BudgetOptions;
  readonly #now: () => number;
  readonly #requests = new Array<number>(BUCKETS).fill(0);
  readonly #retries = new Array<number>(BUCKETS).fill(0);
  /** Index of the bucket that `#epoch` names. */
  #epoch = 0;
  /** Retries refused by the budget, for the admin plane. */
  denied = 0;
  /** Retries that added no origin load, made outside the budget, since start. */
  free = 0;

  /** `now`: the clock (ms), injectable so tests can move time instead of sleeping. */
  constructor(opts: BudgetOptions, now: () => number = Date.now) {
    this.#opts = opts;
    this.#now = now;
  }

  /** A regular request (first attempt) was made. */
  request(now = this.#now()): void {
    this.#requests[this.#bucket(now)]!++;
  }

  /** Whether one more retry fits the budget now (takes nothing). */
  available(now = this.#now()): boolean {
    this.#bucket(now);
    return this.#sum(this.#retries) + 1 <= this.allowance();
  }

  /** A retry was made. */
  spend(now = this.#now()): void {
    this.#retries[this.#bucket(now)]!++;
  }

  /** A retry that added no origin load was made: counted, takes nothing from the budget. */
  spendFree(): void {
    this.free++;
  }

  /** A retry was refused for want of budget. */
  deny(): void {
    this.denied++;
  }

  /** Takes one retry from the budget if it has room; counts a refusal otherwise. */
  tryRetry(now = this.#now()): boolean {
    if (!this.available(now)) {
      this.deny();
      return false;
    }
    this.spend(now);
    return true;
  }

  /** Retries the current window allows in all. */
  allowance(): number {
    return this.#opts.min + (this.#sum(this.#requests) * this.#opts.percent) / 100;
  }

  /** Retries made in the current window. */
  spent(now = this.#now()): number {
    this.#bucket(now);
    return this.#sum(this.#retries);
  }

  #sum(a: number[]): number {
    let s = 0;
    for (const v of a) s += v;
    return s;
  }

  /** Index of the bucket for `now`, clearing the buckets that slid out of the window since last time. */
  #bucket(now: number): number {
    const width = Math.max(1, this.#opts.windowMs / BUCKETS);
    const epoch = Math.floor(now / width);
    const stale = Math.min(BUCKETS, epoch - this.#epoch);
    for (let i = 1; i <= stale; i++) {
      const k = (this.#epoch + i) % BUCKETS;
      this.#requests[k] = 0;
      this.#retries[k] = 0;
    }
    if (stale > 0 || this.#epoch === 0) this.#epoch = epoch;
    return epoch % BUCKETS;
  }
}

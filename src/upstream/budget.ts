// The retry budget of a pool (Finagle's RetryBudget, Envoy's retry_budget): over a sliding window,
// retries may add at most `percent` on top of the regular requests, plus a small fixed minimum so a
// quiet pool can still retry. During a total outage every request fails and would be retried `max`
// times; the budget keeps that from multiplying the load on an origin that is trying to come back.

/** Buckets per window: the window slides in steps of window/BUCKETS. */
const BUCKETS = 10;

export type BudgetOptions = { percent: number; min: number; windowMs: number };

export class RetryBudget {
  readonly #opts: BudgetOptions;
  readonly #requests = new Array<number>(BUCKETS).fill(0);
  readonly #retries = new Array<number>(BUCKETS).fill(0);
  /** Index of the bucket that `#epoch` names. */
  #epoch = 0;
  /** Retries refused by the budget, for the admin plane. */
  denied = 0;

  constructor(opts: BudgetOptions) {
    this.#opts = opts;
  }

  /** A regular request (first attempt) was made. */
  request(now = Date.now()): void {
    this.#requests[this.#bucket(now)]!++;
  }

  /** Whether one more retry fits the budget now (takes nothing). */
  available(now = Date.now()): boolean {
    this.#bucket(now);
    return this.#sum(this.#retries) + 1 <= this.allowance();
  }

  /** A retry was made. */
  spend(now = Date.now()): void {
    this.#retries[this.#bucket(now)]!++;
  }

  /** A retry was refused for want of budget. */
  deny(): void {
    this.denied++;
  }

  /** Takes one retry from the budget if it has room; counts a refusal otherwise. */
  tryRetry(now = Date.now()): boolean {
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
  spent(now = Date.now()): number {
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

// A counter with bounded memory for the top lists (paths can have millions of distinct values in a 1 GB
// log). Hand-written because it is twenty lines and no maintained library does exactly this: keep at most
// 2×capacity keys; when full, keep the `capacity` largest and remember the largest count dropped. A key's
// count can then be low by at most that much (the classic frequent-items bound), which the report states.

export type TopEntry = { key: string; count: number };

export class BoundedCounter {
  readonly #capacity: number;
  readonly #counts = new Map<string, number>();
  /** Largest count ever dropped: every reported count may be short by up to this. */
  maxDropped = 0;

  constructor(capacity: number) {
    this.#capacity = capacity;
  }

  add(key: string, n = 1): void {
    this.#counts.set(key, (this.#counts.get(key) ?? 0) + n);
    if (this.#counts.size > 2 * this.#capacity) this.#prune();
  }

  get size(): number {
    return this.#counts.size;
  }

  top(n: number): TopEntry[] {
    return [...this.#counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, n).map(([key, count]) => ({ key, count }));
  }

  #prune(): void {
    const sorted = [...this.#counts].sort((a, b) => b[1] - a[1]);
    for (const [key, count] of sorted.slice(this.#capacity)) {
      this.#counts.delete(key);
      if (count > this.maxDropped) this.maxDropped = count;
    }
  }
}

// The two metrics every request touches, counted in plain numbers and handed to prom-client only at scrape
// time. prom-client validates and hashes the label set on every inc()/observe(), even on a memoised child:
// 1.65 µs of a 17.7 µs cache hit in bench/hit-costs.ts (BENCHMARKS.md "Cost of each feature"). These keep
// the exposition identical (names, types, labels, buckets) and register like any prom-client metric, so
// an AggregatorRegistry merges them across workers as it merges the others (aggregator `sum`).
import { Counter, type Registry } from 'prom-client';

/** A counter whose increments go to plain numbers per label key and reach prom-client when scraped. */
export class DeferredCounter<L extends string> {
  readonly #pending = new Map<string, { labels: Record<L, string>; n: number }>();
  readonly counter: Counter<L>;

  constructor(o: { name: string; help: string; labelNames: readonly L[]; registers: Registry[] }) {
    const pending = this.#pending;
    this.counter = new Counter<L>({
      ...o,
      collect() {
        for (const p of pending.values()) {
          if (p.n === 0) continue;
          this.inc(p.labels as never, p.n);
          p.n = 0;
        }
      },
    });
  }

  /** `key` identifies the label set (the caller builds it from closed unions, so it is bounded). */
  inc(key: string, labels: () => Record<L, string>): void {
    const p = this.#pending.get(key);
    if (p) p.n++;
    else this.#pending.set(key, { labels: labels(), n: 1 });
  }
}

type Series = { labels: Record<string, string>; buckets: Float64Array; sum: number; count: number };

/** A histogram exported in prom-client's shape (`_bucket` cumulative with `le` first, `_sum`, `_count`). */
export class FastHistogram {
  readonly name: string;
  readonly help: string;
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly #label: string;
  readonly #bounds: readonly number[];
  readonly #series = new Map<string, Series>();

  /** `label`: the one label of observe(); observeKeyed() gives its own label sets. */
  constructor(o: { name: string; help: string; label: string; buckets: readonly number[]; registers: Registry[] }) {
    this.name = o.name;
    this.help = o.help;
    this.#label = o.label;
    this.#bounds = o.buckets;
    for (const r of o.registers) r.registerMetric(this as never);
  }

  observe(labelValue: string, v: number): void {
    let s = this.#series.get(labelValue);
    if (!s) this.#series.set(labelValue, (s = { labels: { [this.#label]: labelValue }, buckets: new Float64Array(this.#bounds.length), sum: 0, count: 0 }));
    this.#add(s, v);
  }

  /** For a histogram over several labels: `key` identifies the label set (bounded, as DeferredCounter's). */
  observeKeyed(key: string, labels: () => Record<string, string>, v: number): void {
    let s = this.#series.get(key);
    if (!s) this.#series.set(key, (s = { labels: labels(), buckets: new Float64Array(this.#bounds.length), sum: 0, count: 0 }));
    this.#add(s, v);
  }

  #add(s: Series, v: number): void {
    const b = this.#bounds;
    for (let i = 0; i < b.length; i++) {
      if (v <= b[i]!) {
        s.buckets[i]!++;
        break;
      }
    }
    s.sum += v;
    s.count++;
  }

  /** prom-client's Registry calls this on a scrape. */
  get(): { name: string; help: string; type: string; aggregator: string; values: { value: number; labels: Record<string, string | number>; metricName: string }[] } {
    const values: { value: number; labels: Record<string, string | number>; metricName: string }[] = [];
    for (const s of this.#series.values()) {
      let acc = 0;
      for (let i = 0; i < this.#bounds.length; i++) {
        acc += s.buckets[i]!;
        values.push({ value: acc, labels: { le: this.#bounds[i]!, ...s.labels }, metricName: `${this.name}_bucket` });
      }
      values.push({ value: s.count, labels: { le: '+Inf', ...s.labels }, metricName: `${this.name}_bucket` });
      values.push({ value: s.sum, labels: { ...s.labels }, metricName: `${this.name}_sum` });
      values.push({ value: s.count, labels: { ...s.labels }, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    this.#series.clear();
  }
}

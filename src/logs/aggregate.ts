// Streaming aggregation of log records: counters and time buckets only, never the lines, so memory
// depends on the number of distinct minutes (bounded: buckets widen past MAX_BUCKETS) and the top-list
// capacity — not on the size of the log.
import { failureHint } from './hints.ts';
import { LOG_FORMATS, type LogFormat, type LogRecord } from './record.ts';
import { BoundedCounter, type TopEntry } from './top.ts';

/** Past this many buckets, the bucket width doubles (1 min → 2 min → …): ~14 days at one-minute resolution. */
export const MAX_BUCKETS = 20_000;
/** Distinct keys each top list keeps exactly before it starts pruning (see top.ts). */
const TOP_CAPACITY = 1000;

type Bucket = { requests: number; s5xx: number; failures: Map<string, number> | undefined };

export type Burst = { start: string; end: string; minutes: number; requests: number; s5xx: number; topFailure: string | undefined };

export type Analysis = {
  lines: number;
  formats: Record<LogFormat, number>;
  /** Lines no parser recognised. */
  unrecognised: number;
  /** Lines recognised but not requests (Lacquer start/stop messages), or without a time. */
  ignored: number;
  requests: number;
  status5xx: number;
  /** Requests with a failure that a stale object covered (Lacquer only). */
  staleServed: number;
  backgroundFailures: number;
  first: string | undefined;
  last: string | undefined;
  bucketMinutes: number;
  burstThreshold: number;
  series: { start: string; requests: number; s5xx: number }[];
  failures: (TopEntry & { hint: string | undefined })[];
  backends: TopEntry[];
  paths: TopEntry[];
  /** Counts in a top list may be low by up to this much (0: exact). */
  approximate: { backends: number; paths: number };
  bursts: Burst[];
};

export class Aggregator {
  lines = 0;
  unrecognised = 0;
  ignored = 0;
  requests = 0;
  status5xx = 0;
  staleServed = 0;
  backgroundFailures = 0;
  readonly formats: Record<LogFormat, number> = Object.fromEntries(LOG_FORMATS.map((f) => [f, 0])) as Record<LogFormat, number>;
  #bucketMs = 60_000;
  #buckets = new Map<number, Bucket>();
  #first = Infinity;
  #last = -Infinity;
  // Failure names are a small closed set (RFC 9209 classes + `status 5xx`), but read from untrusted input: bounded too.
  readonly #failures = new BoundedCounter(TOP_CAPACITY);
  readonly #backends = new BoundedCounter(TOP_CAPACITY);
  readonly #paths = new BoundedCounter(TOP_CAPACITY);
  /** Which formats each `status 5xx` failure came from, for its hint; at most 100 keys (500-599). */
  readonly #statusFormats = new Map<string, Set<LogFormat>>();

  add(r: LogRecord | null | undefined): void {
    this.lines++;
    if (r === undefined) {
      this.unrecognised++;
      return;
    }
    if (r === null || r.time === undefined) {
      this.ignored++;
      return;
    }
    this.formats[r.format]++;
    if (r.time < this.#first) this.#first = r.time;
    if (r.time > this.#last) this.#last = r.time;
    const b = this.#bucket(r.time);
    const is5xx = r.kind === 'request' && r.status !== undefined && r.status >= 500 && r.status <= 599;
    if (r.kind === 'request') {
      this.requests++;
      b.requests++;
    }
    if (is5xx) {
      this.status5xx++;
      b.s5xx++;
    }
    if (!r.failure) return;
    if (r.kind === 'background') this.backgroundFailures++;
    if (r.servedStale) this.staleServed++;
    this.#failures.add(r.failure);
    if (r.failure.startsWith('status ')) {
      const set = this.#statusFormats.get(r.failure) ?? new Set();
      set.add(r.format);
      this.#statusFormats.set(r.failure, set);
    }
    if (r.backend) this.#backends.add(r.backend);
    if (r.path) this.#paths.add(r.path);
    if (is5xx) {
      b.failures ??= new Map();
      b.failures.set(r.failure, (b.failures.get(r.failure) ?? 0) + 1);
    }
  }

  #bucket(time: number): Bucket {
    const key = time - (((time % this.#bucketMs) + this.#bucketMs) % this.#bucketMs);
    let b = this.#buckets.get(key);
    if (!b) {
      if (this.#buckets.size >= MAX_BUCKETS) {
        this.#widen();
        return this.#bucket(time);
      }
      b = { requests: 0, s5xx: 0, failures: undefined };
      this.#buckets.set(key, b);
    }
    return b;
  }

  /** Doubles the bucket width and merges neighbours, halving (about) the number of buckets. */
  #widen(): void {
    this.#bucketMs *= 2;
    const old = this.#buckets;
    this.#buckets = new Map();
    for (const [k, v] of old) {
      const key = k - (((k % this.#bucketMs) + this.#bucketMs) % this.#bucketMs);
      const into = this.#buckets.get(key);
      if (!into) {
        this.#buckets.set(key, v);
        continue;
      }
      into.requests += v.requests;
      into.s5xx += v.s5xx;
      for (const [f, n] of v.failures ?? []) {
        into.failures ??= new Map();
        into.failures.set(f, (into.failures.get(f) ?? 0) + n);
      }
    }
  }

  /** Runs of consecutive buckets with at least `threshold` 5xx per minute. */
  #bursts(keys: number[], threshold: number): Burst[] {
    const perBucket = threshold * (this.#bucketMs / 60_000);
    const out: Burst[] = [];
    let run: { start: number; end: number; requests: number; s5xx: number; failures: Map<string, number> } | undefined;
    const close = (): void => {
      if (!run) return;
      const top = [...run.failures].sort((a, b) => b[1] - a[1])[0];
      out.push({
        start: new Date(run.start).toISOString(),
        end: new Date(run.end).toISOString(),
        minutes: (run.end - run.start) / 60_000,
        requests: run.requests,
        s5xx: run.s5xx,
        topFailure: top?.[0],
      });
      run = undefined;
    };
    for (const k of keys) {
      const b = this.#buckets.get(k)!;
      if (b.s5xx < perBucket) {
        close();
        continue;
      }
      if (run && run.end !== k) close();
      run ??= { start: k, end: k, requests: 0, s5xx: 0, failures: new Map() };
      run.end = k + this.#bucketMs;
      run.requests += b.requests;
      run.s5xx += b.s5xx;
      for (const [f, n] of b.failures ?? []) run.failures.set(f, (run.failures.get(f) ?? 0) + n);
    }
    close();
    return out;
  }

  result(o: { top: number; burstThreshold: number }): Analysis {
    const keys = [...this.#buckets.keys()].sort((a, b) => a - b);
    return {
      lines: this.lines,
      formats: { ...this.formats },
      unrecognised: this.unrecognised,
      ignored: this.ignored,
      requests: this.requests,
      status5xx: this.status5xx,
      staleServed: this.staleServed,
      backgroundFailures: this.backgroundFailures,
      first: Number.isFinite(this.#first) ? new Date(this.#first).toISOString() : undefined,
      last: Number.isFinite(this.#last) ? new Date(this.#last).toISOString() : undefined,
      bucketMinutes: this.#bucketMs / 60_000,
      burstThreshold: o.burstThreshold,
      series: keys.map((k) => ({ start: new Date(k).toISOString(), requests: this.#buckets.get(k)!.requests, s5xx: this.#buckets.get(k)!.s5xx })),
      failures: this.#failures.top(o.top).map((e) => ({ ...e, hint: failureHint(e.key, [...(this.#statusFormats.get(e.key) ?? [])].sort()) })),
      backends: this.#backends.top(o.top),
      paths: this.#paths.top(o.top),
      approximate: { backends: this.#backends.maxDropped, paths: this.#paths.maxDropped },
      bursts: this.#bursts(keys, o.burstThreshold),
    };
  }
}

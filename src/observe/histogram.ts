// A small sparse log-scale histogram of milliseconds for the dashboard and alert percentiles over sliding
// windows. prom-client's histograms are cumulative since start and cannot be windowed or merged per second;
// hdr-histogram would be 100 KB per backend per second. Buckets grow by 10%, so a percentile is within
// ±5% of the true value, which is plenty to compare a p99 with a timeout.

const BASE_MS = 0.05;
const GROWTH = Math.log(1.1);

export type Hist = Map<number, number>;

function bucketOf(ms: number): number {
  return ms <= BASE_MS ? 0 : Math.ceil(Math.log(ms / BASE_MS) / GROWTH);
}

/** The geometric middle of a bucket: its representative value. */
function valueOf(bucket: number): number {
  return bucket === 0 ? BASE_MS : BASE_MS * Math.exp((bucket - 0.5) * GROWTH);
}

export function record(h: Hist, ms: number): void {
  const b = bucketOf(ms);
  h.set(b, (h.get(b) ?? 0) + 1);
}

export function mergeInto(into: Hist, from: Hist): void {
  for (const [b, n] of from) into.set(b, (into.get(b) ?? 0) + n);
}

export function count(h: Hist): number {
  let n = 0;
  for (const v of h.values()) n += v;
  return n;
}

/** The q-quantile (0..1) in milliseconds, or undefined for an empty histogram. */
export function quantile(h: Hist, q: number): number | undefined {
  const total = count(h);
  if (total === 0) return undefined;
  const rank = Math.max(1, Math.ceil(q * total));
  let seen = 0;
  for (const b of [...h.keys()].sort((x, y) => x - y)) {
    seen += h.get(b)!;
    if (seen >= rank) return valueOf(b);
  }
  return undefined;
}

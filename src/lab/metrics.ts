// From the load generator's samples to what the report shows: counts, client-visible errors by status and
// by Proxy-Status class, corrupted bodies, latency percentiles and a per-second timeline.
import { isError, type Sample } from './plan.ts';

export type Latency = { p50: number; p99: number; max: number };

export type Second = {
  /** Second since t=0. */
  s: number;
  requests: number;
  errors: number;
  corrupted: number;
  p50: number;
  p99: number;
  max: number;
  /** Origin requests that started in this second (all origins). */
  origin?: number;
};

export type Summary = {
  requests: number;
  errors: number;
  /** errors / requests, 0..1. */
  errorRate: number;
  /** Status → count for client-visible errors; `0` = no complete response (see errorsByTransport). */
  errorsByStatus: Record<string, number>;
  /** Proxy-Status error class → count for client-visible errors ('(none)' when the proxy sent no Proxy-Status). */
  errorsByClass: Record<string, number>;
  /** Transport failures as the client saw them (connection reset, truncated body, client timeout). */
  errorsByTransport: Record<string, number>;
  /** 2xx answers served despite a failure, by Proxy-Status class (stale copies standing in, retried fetches). */
  degradedByClass: Record<string, number>;
  /** 2xx bodies whose bytes do not match the origin's x-lab-checksum. */
  corrupted: number;
  /** 2xx answers whose body could not be checked (no checksum header). */
  unverified: number;
  latency: Latency;
  /** Errors inside the fault window. */
  faultErrors: number;
  timeline: Second[];
};

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length)));
  return sorted[rank - 1]!;
}

function latency(ms: number[]): Latency {
  const sorted = [...ms].sort((a, b) => a - b);
  const round = (x: number) => Math.round(x * 10) / 10;
  return { p50: round(percentile(sorted, 0.5)), p99: round(percentile(sorted, 0.99)), max: round(sorted.at(-1) ?? 0) };
}

const bump = (o: Record<string, number>, k: string) => {
  o[k] = (o[k] ?? 0) + 1;
};

export function summarize(samples: readonly Sample[], window: { faultFromMs: number; faultToMs: number; endMs: number }): Summary {
  const errorsByStatus: Record<string, number> = {};
  const errorsByClass: Record<string, number> = {};
  const errorsByTransport: Record<string, number> = {};
  const degradedByClass: Record<string, number> = {};
  let errors = 0;
  let corrupted = 0;
  let unverified = 0;
  let faultErrors = 0;
  const seconds = Math.max(1, Math.ceil(window.endMs / 1000));
  const buckets = Array.from({ length: seconds }, () => ({ ms: [] as number[], errors: 0, corrupted: 0 }));
  for (const s of samples) {
    const b = buckets[Math.min(seconds - 1, Math.max(0, Math.floor(s.t / 1000)))]!;
    b.ms.push(s.ms);
    if (s.v === 'bad') {
      corrupted++;
      b.corrupted++;
    }
    if (isError(s)) {
      errors++;
      b.errors++;
      if (s.t >= window.faultFromMs && s.t < window.faultToMs) faultErrors++;
      bump(errorsByStatus, String(s.s));
      bump(errorsByClass, s.c || '(none)');
      if (s.s === 0) bump(errorsByTransport, s.e ?? 'unknown');
    } else {
      if (s.c) bump(degradedByClass, s.c);
      if (s.v === 'none' && s.s >= 200 && s.s < 300) unverified++;
    }
  }
  return {
    requests: samples.length,
    errors,
    errorRate: samples.length ? errors / samples.length : 0,
    errorsByStatus,
    errorsByClass,
    errorsByTransport,
    degradedByClass,
    corrupted,
    unverified,
    latency: latency(samples.map((s) => s.ms)),
    faultErrors,
    timeline: buckets.map((b, i) => ({ s: i, requests: b.ms.length, errors: b.errors, corrupted: b.corrupted, ...latency(b.ms) })),
  };
}

/** Origin requests per second from cumulative (time, total) points taken during the run. */
export function perSecond(points: readonly { t: number; total: number }[], seconds: number): number[] {
  const out = new Array<number>(seconds).fill(0);
  const at = (ms: number) => {
    let v = 0;
    for (const p of points) {
      if (p.t <= ms) v = p.total;
      else break;
    }
    return v;
  };
  for (let i = 0; i < seconds; i++) out[i] = Math.max(0, at((i + 1) * 1000) - at(i * 1000));
  return out;
}

// The learned concurrency limit of one backend (issue 9 item 4): how many requests it gets at once,
// found by watching it rather than configured. The rest wait in the backend's queue (gate.ts).
//
// Which algorithm, and why. Netflix's concurrency-limits offers Vegas and Gradient2 (latency only: the
// limit follows the ratio of a long to a short RTT average) and AIMD (loss only: +1 while fine, ×0.9
// on a drop); Envoy's adaptive concurrency filter is a gradient controller that periodically pins the
// concurrency low to re-measure the minimum RTT. An origin at capacity often does not get slower: it
// answers 503 (or 429, or refuses) — often after a delay, so the news of an overshoot arrives a whole
// second late. A latency-only limiter never sees that; a per-request AIMD keeps adding +1 per success
// during that second and overshoots by dozens. So this is AIMD driven by drops, with two things from TCP
// congestion avoidance and a latency check:
//   - one probe at a time: the limit grows only when the first request sent at the full limit (the
//     probe) came back fine, and no request in flight is "stuck" (older than twice the recent p99 of good
//     answers): a refusal that takes a second to come back holds growth from the moment it is late, not
//     from the moment it arrives. It grows by half (slow start) while probes are as fast as the baseline
//     and the origin never refused, else by 1;
//   - one cut per window: drops of requests sent before the last cut are old news and ignored;
//   - a latency check in the manner of Gradient2 and Envoy: no growth while the short RTT average exceeds
//     `TOLERANCE` × the baseline, and a ×0.9 cut when three quarters of the last `SLOW_WINDOW` answers
//     took longer than `CUT_TOLERANCE` × it, at high concurrency. The baseline is the lowest short
//     average of the last 15-30 s (Envoy and Vegas use a minimum RTT): Gradient2's long-term average
//     drifts up with a slowed origin and stops seeing it. Three quarters, not every answer: an origin
//     slowed by our load slows most answers, while a busy machine's scheduling noise delays some.
// A 503/429 sent at concurrency k says the origin holds at most k-1 of ours: the cut goes at least
// there (Vegas-like estimate; with other clients on the origin the ×0.9 cut is the smaller one). Growing
// back to the level of the last refusal (`ceiling`) waits out a back-off that doubles while refusals keep
// coming (1 s … 30 s), so a hard limit is probed rarely, not once a second. A drop counts only when the
// backend was busy (sent at ≥ half the limit): an application 503 on some URLs at low load is not
// overload, and must not throttle the whole backend.
import type { OverloadConfig } from '../config/schema.ts';

/** What one finished attempt said about load. `drop`: 503/429, refused, connect or first-byte timeout. */
export type LoadSignal = { kind: 'ok'; rttMs: number } | { kind: 'drop'; overloaded: boolean } | { kind: 'none' };

/** One attempt holding a slot: when it started and how many of ours were at the backend then (itself included). */
export type LimitToken = { readonly at: number; readonly inflight: number; done: boolean };

export type LimiterSettings = Pick<OverloadConfig, 'adaptive' | 'initial_limit' | 'min_limit' | 'max_limit'>;

export type LimiterSnapshot = {
  adaptive: boolean;
  limit: number;
  /** Concurrency at which the origin last refused (503/429), null when none recently. */
  ceiling: number | null;
  /** Requests in flight longer than this are late: no growth while one is (ms). */
  stuckMs: number;
  rttShortMs: number | undefined;
  rttLongMs: number | undefined;
  /** The latency baseline (lowest recent short average), ms. */
  rttBaselineMs: number | undefined;
  drops: number;
  cuts: number;
};

/** Short RTT average may exceed the baseline by this factor before growth stops (Gradient2 uses 1.5-2). */
const TOLERANCE = 2;
/** Answers past this factor of the baseline are slow; mostly slow answers mean the backend slows under our load. */
const CUT_TOLERANCE = 2.5;
/** Slow start steps only on a probe at most this factor of the baseline. */
const SLOW_START_TOLERANCE = 1.5;
/** The latency cut looks at this many recent answers. */
const SLOW_WINDOW = 16;
const SHORT_ALPHA = 0.1;
const LONG_ALPHA = 0.02;
const BACKOFF = 0.9;
const PROBE_BACKOFF_MIN_MS = 1000;
const PROBE_BACKOFF_MAX_MS = 30_000;
/** The latency baseline is the lowest short average over the current and the previous window. */
const BASELINE_WINDOW_MS = 15_000;
/** Good answers remembered for the p99 that defines a late request. */
const RTT_SAMPLES = 256;
/** A request is late past max(2 × p99, 4 × long average, this), ms. */
const STUCK_FLOOR_MS = 20;

export class ConcurrencyLimiter {
  readonly adaptive: boolean;
  readonly #min: number;
  readonly #max: number;
  readonly #now: () => number;
  readonly #onRaise: () => void;
  #limit: number;
  #probe: LimitToken | undefined;
  /** Last cut for latency, and last cut for drops: each signal has its own window (a latency cut must not hide drops). */
  #lastCutAt = -Infinity;
  #lastDropCutAt = -Infinity;
  #lastDropAt = -Infinity;
  #lastRaiseAt = -Infinity;
  #probeBackoffMs = PROBE_BACKOFF_MIN_MS;
  #ceiling = Infinity;
  /** Tokens in flight, oldest first (a Set keeps insertion order). */
  readonly #inflight = new Set<LimitToken>();
  readonly #rtts: number[] = [];
  #rttNext = 0;
  /** Scratch space for #recentQuarter and #sampleRtt: they run once per answer (issue 12: no array per answer). */
  readonly #window = new Float64Array(SLOW_WINDOW);
  readonly #sorted = new Float64Array(RTT_SAMPLES);
  #stuckMs = STUCK_FLOOR_MS * 50;
  #short: number | undefined;
  #long: number | undefined;
  #baseCur = Infinity;
  #basePrev = Infinity;
  #baseSince = -Infinity;
  drops = 0;
  cuts = 0;

  /**
   * `hardCap`: the backend's explicit `max_connections` (0/undefined: none) — the learned limit never
   * goes above it. `onRaise`: called when the limit grew (the queue may move).
   */
  constructor(s: LimiterSettings, hardCap: number | undefined, onRaise: () => void = () => undefined, now: () => number = () => performance.now()) {
    this.adaptive = s.adaptive;
    const cap = hardCap && hardCap > 0 ? hardCap : Infinity;
    this.#max = Math.max(1, Math.min(s.max_limit, cap));
    this.#min = Math.min(Math.max(1, s.min_limit), this.#max);
    this.#limit = this.adaptive ? clamp(s.initial_limit, this.#min, this.#max) : cap;
    this.#now = now;
    this.#onRaise = onRaise;
  }

  /** Requests the backend may have at once now (Infinity: no limit). */
  get limit(): number {
    return this.#limit;
  }

  /** A request took a slot; `inflight` counts it. */
  start(inflight: number): LimitToken {
    const t: LimitToken = { at: this.#now(), inflight, done: false };
    if (!this.adaptive) return t;
    this.#inflight.add(t);
    if (this.#probe === undefined && inflight >= this.#limit) this.#probe = t;
    return t;
  }

  /** The attempt is over; what it said about load. Idempotent per token. */
  finish(t: LimitToken, s: LoadSignal): void {
    if (t.done) return;
    t.done = true;
    this.#inflight.delete(t);
    const probe = this.#probe === t;
    if (probe) this.#probe = undefined;
    if (!this.adaptive) return;
    if (s.kind === 'ok') this.#ok(t, s.rttMs, probe);
    else if (s.kind === 'drop') this.#drop(t, s.overloaded);
  }

  #ok(t: LimitToken, rtt: number, probe: boolean): void {
    this.#short = this.#short === undefined ? rtt : this.#short + SHORT_ALPHA * (rtt - this.#short);
    this.#long = this.#long === undefined ? rtt : this.#long + LONG_ALPHA * (rtt - this.#long);
    // Gradient2: after a long slow period, let the long average come back down.
    if (this.#long / Math.max(this.#short, 0.001) > 2) this.#long *= 0.95;
    const now = this.#now();
    const base = this.#baseline(now, this.#short);
    // A cut needs three quarters of the last SLOW_WINDOW answers past CUT_TOLERANCE × the baseline, and is
    // the gentle AIMD factor, once per window; past TOLERANCE × it the backend only stops growing.
    this.#sampleRtt(rtt);
    const q = this.#recentQuarter();
    if (q > CUT_TOLERANCE * base && q - base > 1 && t.at >= this.#lastCutAt && t.inflight >= this.#limit / 2) {
      this.#cut(Math.floor(this.#limit * BACKOFF), now);
      return;
    }
    if (this.#short > TOLERANCE * base && this.#short - base > 1) return;
    if (!probe || this.#limit >= this.#max) return;
    if (this.#late(now)) return;
    if (this.#limit + 1 >= this.#ceiling) {
      // Growing to the level refused last, or past it, waits out the probe back-off; and one step at a
      // time: a refusal caused by the previous step must have had the time to show up as late.
      // Twice the lateness bound: the request sent at the previous step may have left a little after it.
      if (now - this.#lastDropAt < this.#probeBackoffMs || now - this.#lastRaiseAt <= 2 * this.#stuckMs) return;
    }
    // Slow start (TCP): until the origin has refused once, a probe that came back as fast as the baseline
    // grows the limit by half, so a slow origin facing a burst is not held at the initial limit while the
    // queue times out; a slower probe (the origin starts to feel it), or any probe after a refusal, one step.
    const slowStart = !Number.isFinite(this.#ceiling) && rtt <= SLOW_START_TOLERANCE * base;
    this.#limit = Math.min(this.#max, this.#limit + (slowStart ? Math.max(1, Math.floor(this.#limit / 2)) : 1));
    this.#lastRaiseAt = now;
    if (this.#limit >= this.#ceiling) this.#ceiling = this.#limit + 1;
    this.#onRaise();
  }

  /** The lowest short RTT average of the current and the previous window. */
  #baseline(now: number, short: number): number {
    if (now - this.#baseSince > BASELINE_WINDOW_MS) {
      this.#basePrev = this.#baseCur;
      this.#baseCur = Infinity;
      this.#baseSince = now;
    }
    this.#baseCur = Math.min(this.#baseCur, short);
    return Math.min(this.#baseCur, this.#basePrev);
  }

  /** The fastest of the slowest three quarters of the last SLOW_WINDOW answers (fewer at the start), ms. */
  #recentQuarter(): number {
    const n = Math.min(SLOW_WINDOW, this.#rtts.length);
    const w = this.#window;
    for (let i = 1; i <= n; i++) w[i - 1] = this.#rtts[(this.#rttNext - i + RTT_SAMPLES) % RTT_SAMPLES]!;
    // The k-th smallest by a partial selection sort: k is a quarter of at most 16, so a few passes.
    const k = Math.floor(n / 4);
    for (let i = 0; i <= k; i++) {
      let min = i;
      for (let j = i + 1; j < n; j++) if (w[j]! < w[min]!) min = j;
      const t = w[i]!;
      w[i] = w[min]!;
      w[min] = t;
    }
    return w[k]!;
  }

  /** Some request in flight has taken much longer than good answers do. */
  #late(now: number): boolean {
    const oldest = this.#inflight.values().next().value;
    return oldest !== undefined && now - oldest.at > this.#stuckMs;
  }

  #sampleRtt(rtt: number): void {
    this.#rtts[this.#rttNext] = rtt;
    this.#rttNext = (this.#rttNext + 1) % RTT_SAMPLES;
    if (this.#rttNext % 32 !== 0 && this.#rtts.length > 32) return; // recomputed every 32 samples
    const m = this.#rtts.length;
    const sorted = this.#sorted.subarray(0, m);
    for (let i = 0; i < m; i++) sorted[i] = this.#rtts[i]!;
    sorted.sort(); // a typed array sorts numerically, without a comparator call per comparison
    const p99 = sorted[Math.min(m - 1, Math.floor(0.99 * m))]!;
    this.#stuckMs = Math.max(2 * p99, 4 * (this.#long ?? 0), STUCK_FLOOR_MS);
  }

  #drop(t: LimitToken, overloaded: boolean): void {
    this.drops++;
    const now = this.#now();
    if (t.at < this.#lastDropCutAt) return; // sent before the last cut for a drop: already accounted for
    if (t.inflight < this.#limit / 2) return; // not busy: an application error, not overload
    let next = Math.floor(this.#limit * BACKOFF);
    if (overloaded) {
      // The origin said "too many" at t.inflight: it holds at most one less of ours.
      next = Math.min(next, t.inflight - 1);
      this.#probeBackoffMs = now - this.#lastDropAt < 4 * this.#probeBackoffMs ? Math.min(this.#probeBackoffMs * 2, PROBE_BACKOFF_MAX_MS) : PROBE_BACKOFF_MIN_MS;
      this.#ceiling = Math.max(t.inflight, next + 1);
      this.#lastDropAt = now;
    }
    this.#lastDropCutAt = now;
    this.#cut(next, now);
  }

  #cut(to: number, now: number): void {
    const next = clamp(to, this.#min, this.#max);
    if (next >= this.#limit) return;
    this.#limit = next;
    this.#lastCutAt = now;
    this.#probe = undefined;
    this.cuts++;
  }

  snapshot(): LimiterSnapshot {
    const r = (v: number | undefined) => (v === undefined ? undefined : Math.round(v * 10) / 10);
    return {
      adaptive: this.adaptive,
      limit: this.#limit,
      ceiling: Number.isFinite(this.#ceiling) ? this.#ceiling : null,
      stuckMs: Math.round(this.#stuckMs),
      rttShortMs: r(this.#short),
      rttLongMs: r(this.#long),
      rttBaselineMs: r(Number.isFinite(Math.min(this.#baseCur, this.#basePrev)) ? Math.min(this.#baseCur, this.#basePrev) : undefined),
      drops: this.drops,
      cuts: this.cuts,
    };
  }
}

function clamp(v: number, lo: number, hi: number): number {
  return Math.max(lo, Math.min(hi, v));
}

// Alert rules, evaluated in-process every `alerts.interval` over the timeline's windows and the pools' state.
// Each rule is a small state machine:
//   ok ──condition holds──→ pending ──held for `for`──→ firing (notify "firing")
//   firing ──condition false for `clear_for`──→ ok (notify "resolved")
// `clear_for` is the hysteresis that keeps a condition hovering at its threshold from flapping, and
// `min_interval` keeps a resolved rule from firing again too soon: one notification per real change.
import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import type { PoolSnapshot } from '../upstream/state.ts';
import { formatValue, holds, type Condition } from './alert-conditions.ts';
import { count, quantile } from './histogram.ts';
import { hitRatio, type Timeline, type WindowStats } from './timeline.ts';
import type { Notification, WebhookSender } from './webhooks.ts';

type Rule = Config['alerts']['rules'][number];

export type AlertState = 'ok' | 'pending' | 'firing';

export type AlertView = {
  name: string;
  when: string;
  state: AlertState;
  value: number | null;
  value_text: string;
  threshold: number | null;
  threshold_text: string | null;
  for_ms: number;
  clear_for_ms: number;
  window_ms: number;
  /** Condition holding since (pending), or firing since (firing). ISO 8601. */
  since: string | null;
  summary: string;
  last_notification: { state: 'firing' | 'resolved'; at: string } | null;
};

type Measurement = { value: number | undefined; detail: string; window: WindowStats | undefined };

type RuleRun = {
  rule: Rule;
  windowMs: number;
  clearForMs: number;
  state: AlertState;
  /** When the condition started holding. */
  holdingSince: number | undefined;
  firingSince: number | undefined;
  clearingSince: number | undefined;
  resolvedAt: number | undefined;
  last: Measurement;
  lastNotification: { state: 'firing' | 'resolved'; at: string } | null;
};

export type AlertSources = {
  timeline: Timeline;
  pools(): PoolSnapshot[];
};

const worstBackend = (w: WindowStats, q: number): { value: number | undefined; detail: string } => {
  let worst: number | undefined;
  let who = '';
  for (const [k, b] of w.backends) {
    if (count(b.ttfb) === 0) continue;
    const v = quantile(b.ttfb, q)!;
    if (worst === undefined || v > worst) [worst, who] = [v, k];
  }
  return { value: worst, detail: who ? `worst backend ${who}` : 'no origin responses in the window' };
};

/** The value of a rule's signal now. */
export function measure(c: Condition, windowMs: number, src: AlertSources, now: number): Measurement {
  const w = c.unit === 'flag' ? undefined : src.timeline.window(windowMs, now);
  const ratio = (num: number, den: number, what: string) => ({ value: den === 0 ? undefined : num / den, detail: `${num} of ${den} ${what}`, window: w });
  switch (c.signal) {
    case 'error_rate':
      return ratio(w!.s5xx, w!.requests, 'responses were 5xx');
    case 'origin_error_rate':
      return ratio(w!.attemptFailures, w!.attempts, 'origin attempts failed');
    case 'stale_ratio':
      return ratio(w!.cache.stale, w!.requests, 'responses were stale');
    case 'hit_ratio': {
      const r = hitRatio(w!.cache);
      return { value: r ?? undefined, detail: `${w!.cache.hit + w!.cache.stale + w!.cache.collapsed} answered from cache`, window: w };
    }
    case 'request_rate':
      return { value: w!.requests / (windowMs / 1000), detail: `${w!.requests} requests`, window: w };
    case 'latency_p99':
      return { value: quantile(w!.latency, 0.99), detail: `${count(w!.latency)} responses`, window: w };
    case 'backend_ttfb_p50':
      return { ...worstBackend(w!, 0.5), window: w };
    case 'backend_ttfb_p99':
      return { ...worstBackend(w!, 0.99), window: w };
    case 'event_loop_delay':
      return { value: w!.eldP99Ms, detail: 'worst second in the window', window: w };
    case 'backend_unhealthy': {
      const bad = src.pools().flatMap((p) => p.backends.filter((b) => b.state === 'sick' || b.state === 'ejected').map((b) => `${p.name}/${b.name} ${b.state}`));
      return { value: bad.length, detail: bad.length ? bad.join(', ') : 'every backend healthy or draining', window: undefined };
    }
    case 'pool_unavailable': {
      const down = src.pools().filter((p) => p.healthy === 0).map((p) => `${p.name} (0/${p.total} healthy)`);
      return { value: down.length, detail: down.length ? down.join(', ') : 'every pool has a healthy backend', window: undefined };
    }
  }
}

export class AlertEngine {
  readonly #runs: RuleRun[];
  readonly #cfg: Config['alerts'];
  readonly #src: AlertSources;
  readonly #sender: WebhookSender;
  readonly #log: Logger;
  readonly #proxy: string;
  #timer: NodeJS.Timeout | undefined;

  constructor(cfg: Config['alerts'], proxy: string, src: AlertSources, sender: WebhookSender, log: Logger) {
    this.#cfg = cfg;
    this.#proxy = proxy;
    this.#src = src;
    this.#sender = sender;
    this.#log = log;
    this.#runs = cfg.rules.map((rule) => ({
      rule,
      windowMs: rule.window ?? cfg.window,
      clearForMs: rule.clear_for ?? Math.max(rule.for, 2 * cfg.interval),
      state: 'ok',
      holdingSince: undefined,
      firingSince: undefined,
      clearingSince: undefined,
      resolvedAt: undefined,
      last: { value: undefined, detail: 'not evaluated yet', window: undefined },
      lastNotification: null,
    }));
  }

  /**
   * After a reload: rules that kept their name and condition keep their state (a firing alert stays firing,
   * so the reload sends no second "firing"); new or changed rules start at ok.
   */
  adoptState(previous: AlertEngine): void {
    const old = new Map(previous.#runs.map((r) => [r.rule.name, r]));
    for (const run of this.#runs) {
      const o = old.get(run.rule.name);
      if (!o || o.rule.when.text !== run.rule.when.text) continue;
      run.state = o.state;
      run.holdingSince = o.holdingSince;
      run.firingSince = o.firingSince;
      run.clearingSince = o.clearingSince;
      run.resolvedAt = o.resolvedAt;
      run.last = o.last;
      run.lastNotification = o.lastNotification;
    }
  }

  start(): void {
    if (this.#runs.length === 0) return;
    this.#timer = setInterval(() => this.evaluate(), this.#cfg.interval);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** One evaluation round (called by the timer; tests may call it directly). */
  evaluate(now = Date.now()): void {
    for (const run of this.#runs) {
      try {
        this.#step(run, now);
      } catch (err) {
        this.#log.error({ type: 'alert', rule: run.rule.name, err }, `alert rule ${run.rule.name} could not be evaluated`);
      }
    }
  }

  #step(run: RuleRun, now: number): void {
    const c = run.rule.when;
    run.last = measure(c, run.windowMs, this.#src, now);
    const on = holds(c, run.last.value);
    if (run.state === 'ok') {
      if (!on) return;
      run.state = 'pending';
      run.holdingSince = now; // with `for: 0` the rule fires in this same round, below
    }
    switch (run.state) {
      case 'pending': {
        if (!on) {
          run.state = 'ok';
          run.holdingSince = undefined;
          return;
        }
        const held = now - run.holdingSince! >= run.rule.for;
        const rested = run.resolvedAt === undefined || now - run.resolvedAt >= this.#cfg.min_interval;
        if (held && rested) {
          run.state = 'firing';
          run.firingSince = now;
          run.clearingSince = undefined;
          this.#notify(run, 'firing', now);
        }
        return;
      }
      case 'firing':
        if (on) {
          run.clearingSince = undefined;
          return;
        }
        run.clearingSince ??= now;
        if (now - run.clearingSince >= run.clearForMs) {
          run.state = 'ok';
          run.resolvedAt = now;
          this.#notify(run, 'resolved', now);
          run.holdingSince = undefined;
          run.firingSince = undefined;
          run.clearingSince = undefined;
        }
        return;
    }
  }

  #summary(run: RuleRun, state: AlertState | 'resolved'): string {
    const c = run.rule.when;
    const v = formatValue(c.unit, run.last.value);
    const cond = c.unit === 'flag' ? `${c.signal}: ${run.last.detail}` : `${c.signal} ${v} ${c.op} ${formatValue(c.unit, c.threshold)} (${run.last.detail}, window ${run.windowMs / 1000}s)`;
    if (state === 'resolved') return `${run.rule.name} resolved: ${c.unit === 'flag' ? run.last.detail : `${c.signal} back to ${v}`}`;
    if (state === 'ok') return `${run.rule.name} ok: ${cond}`;
    return `${run.rule.name} ${state}: ${cond}`;
  }

  #topFailures(run: RuleRun, now: number): Notification['top_failures'] {
    // Flag rules have no window of their own: show what failed over the default window.
    const w = run.last.window ?? this.#src.timeline.window(run.windowMs, now);
    return Object.entries(w.failures)
      .sort((a, b) => b[1].n - a[1].n)
      .slice(0, 3)
      .map(([cls, f]) => ({ class: cls, count: f.n, example_request_id: f.example, ...(f.backend ? { backend: f.backend } : {}) }));
  }

  #notify(run: RuleRun, state: 'firing' | 'resolved', now: number): void {
    const c = run.rule.when;
    const at = new Date(now).toISOString();
    const n: Notification = {
      proxy: this.#proxy,
      rule: run.rule.name,
      state,
      condition: c.text,
      signal: c.signal,
      value: run.last.value ?? null,
      threshold: c.unit === 'flag' ? null : c.threshold,
      value_text: formatValue(c.unit, run.last.value),
      threshold_text: c.unit === 'flag' ? null : formatValue(c.unit, c.threshold),
      since: new Date((state === 'firing' ? run.holdingSince : run.firingSince) ?? now).toISOString(),
      at,
      summary: this.#summary(run, state),
      top_failures: this.#topFailures(run, now),
    };
    run.lastNotification = { state, at };
    this.#log.warn({ type: 'alert', rule: n.rule, state, value: n.value, threshold: n.threshold }, n.summary);
    this.#sender.send(n);
  }

  states(): { name: string; firing: boolean }[] {
    return this.#runs.map((r) => ({ name: r.rule.name, firing: r.state === 'firing' }));
  }

  view(): AlertView[] {
    return this.#runs.map((r) => {
      const c = r.rule.when;
      const since = r.state === 'firing' ? r.firingSince : r.state === 'pending' ? r.holdingSince : undefined;
      return {
        name: r.rule.name,
        when: c.text,
        state: r.state,
        value: r.last.value ?? null,
        value_text: formatValue(c.unit, r.last.value),
        threshold: c.unit === 'flag' ? null : c.threshold,
        threshold_text: c.unit === 'flag' ? null : formatValue(c.unit, c.threshold),
        for_ms: r.rule.for,
        clear_for_ms: r.clearForMs,
        window_ms: r.windowMs,
        since: since === undefined ? null : new Date(since).toISOString(),
        summary: this.#summary(r, r.state),
        last_notification: r.lastNotification,
      };
    });
  }
}

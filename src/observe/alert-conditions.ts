// The grammar of an alert rule's `when`: `<signal>` for a yes/no signal, or `<signal> <op> <threshold>`
// with the threshold in the signal's unit (`1%`, `2s`, `50/s`). Parsed once at config load so a typo
// is a config error naming the valid signals, never a rule that silently never fires.
import { parseDuration } from '../config/units.ts';

/** How a signal's value is measured, which decides how its threshold is written. */
export type SignalUnit = 'ratio' | 'duration' | 'rate' | 'flag';

/** Every signal a rule can watch, with its unit and what it means (shown in the config error and README). */
export const SIGNALS = {
  error_rate: { unit: 'ratio', doc: 'share of client responses that were 5xx over the window' },
  origin_error_rate: { unit: 'ratio', doc: 'share of origin attempts that failed (any RFC 9209 class) over the window' },
  hit_ratio: { unit: 'ratio', doc: 'share of cacheable lookups answered from cache over the window' },
  stale_ratio: { unit: 'ratio', doc: 'share of responses served stale over the window' },
  request_rate: { unit: 'rate', doc: 'client requests per second over the window' },
  latency_p99: { unit: 'duration', doc: 'client response time p99 over the window' },
  backend_ttfb_p50: { unit: 'duration', doc: "the worst backend's time-to-first-byte p50 over the window" },
  backend_ttfb_p99: { unit: 'duration', doc: "the worst backend's time-to-first-byte p99 over the window" },
  event_loop_delay: { unit: 'duration', doc: "the proxy's event-loop delay p99 over the window" },
  backend_unhealthy: { unit: 'flag', doc: 'any backend is sick or ejected' },
  pool_unavailable: { unit: 'flag', doc: 'some pool has no healthy backend' },
} as const satisfies Record<string, { unit: SignalUnit; doc: string }>;

export type Signal = keyof typeof SIGNALS;
export type Comparison = '>' | '>=' | '<' | '<=';

/** A parsed `when`: thresholds are stored as plain numbers (ratio 0..1, milliseconds, per second). */
export type Condition =
  | { signal: Signal; unit: 'flag'; text: string }
  | { signal: Signal; unit: Exclude<SignalUnit, 'flag'>; op: Comparison; threshold: number; text: string };

const FORM = /^\s*([a-z_0-9]+)\s*(?:(>=|<=|>|<)\s*(\S+))?\s*$/;

/** Parses a threshold in the signal's unit; undefined when it is not one. */
function threshold(unit: Exclude<SignalUnit, 'flag'>, raw: string): number | undefined {
  if (unit === 'ratio') {
    const pct = /^(\d+(?:\.\d+)?)%$/.exec(raw);
    if (pct) return Number(pct[1]) / 100;
    const n = Number(raw);
    return /^\d*\.?\d+$/.test(raw) && n <= 1 ? n : undefined;
  }
  if (unit === 'duration') return parseDuration(raw);
  const rate = /^(\d+(?:\.\d+)?)(?:\/s)?$/.exec(raw);
  return rate ? Number(rate[1]) : undefined;
}

const EXAMPLE: Record<SignalUnit, string> = { ratio: '1% or 0.01', duration: '2s or 500ms', rate: '50/s', flag: '' };

/** Parses `when`; returns the condition or a message saying what would be valid. */
export function parseCondition(text: string): Condition | { problem: string } {
  const m = FORM.exec(text);
  const names = Object.keys(SIGNALS).join(', ');
  if (!m) return { problem: `\`<signal>\` or \`<signal> > <threshold>\`, e.g. \`error_rate > 1%\`; signals: ${names}` };
  const name = m[1]!;
  if (!(name in SIGNALS)) return { problem: `a known signal (${names})` };
  const signal = name as Signal;
  const unit = SIGNALS[signal].unit;
  if (unit === 'flag') {
    if (m[2]) return { problem: `\`${signal}\` alone: it is a yes/no signal with no threshold` };
    return { signal, unit, text: text.trim() };
  }
  if (!m[2] || !m[3]) return { problem: `\`${signal} > <threshold>\` with a threshold like ${EXAMPLE[unit]}` };
  const t = threshold(unit, m[3]);
  if (t === undefined) return { problem: `a threshold for \`${signal}\` like ${EXAMPLE[unit]}` };
  return { signal, unit, op: m[2] as Comparison, threshold: t, text: text.trim() };
}

/** Does `value` meet the condition? An absent value (no traffic in the window) never does. */
export function holds(c: Condition, value: number | undefined): boolean {
  if (value === undefined) return false;
  if (c.unit === 'flag') return value > 0;
  switch (c.op) {
    case '>':
      return value > c.threshold;
    case '>=':
      return value >= c.threshold;
    case '<':
      return value < c.threshold;
    case '<=':
      return value <= c.threshold;
  }
}

/** A value in the condition's unit, for summaries: `12.5%`, `2.31s`, `40/s`. */
export function formatValue(unit: SignalUnit, v: number | undefined): string {
  if (v === undefined) return 'n/a';
  switch (unit) {
    case 'ratio':
      return `${+(v * 100).toFixed(2)}%`;
    case 'duration':
      return v >= 1000 ? `${+(v / 1000).toFixed(3)}s` : `${+v.toFixed(1)}ms`;
    case 'rate':
      return `${+v.toFixed(2)}/s`;
    case 'flag':
      return v > 0 ? 'yes' : 'no';
  }
}

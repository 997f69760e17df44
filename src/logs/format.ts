// `lacquer logs`, human output: totals, a 5xx sparkline, the per-minute table, bursts, the top lists
// and the hint for each failure seen. Times are UTC.
import type { Analysis } from './aggregate.ts';
import type { TopEntry } from './top.ts';

const BLOCKS = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
/** Widest sparkline; longer series are summed into this many columns. */
const SPARK_WIDTH = 72;
/** Most rows of the per-minute table; beyond it only minutes with 5xx are listed, up to this many. */
const MAX_ROWS = 60;

const n = (v: number): string => v.toLocaleString('en-US');
const pct = (a: number, b: number): string => (b ? `${((100 * a) / b).toFixed(1)}%` : '-');
const utc = (iso: string): string => iso.slice(0, 16).replace('T', ' ');

/** One character per value: blank for none, then eight levels scaled to the peak. */
export function sparkline(values: number[]): string {
  const peak = Math.max(0, ...values);
  return values.map((v) => (v === 0 ? ' ' : BLOCKS[Math.min(7, Math.floor((v / peak) * 7.999))])).join('');
}

/** 5xx summed into at most `width` columns of equal time span, so the x axis is time (gaps show blank). */
export function columns(a: Analysis, width = SPARK_WIDTH): number[] {
  if (!a.series.length) return [];
  const step = a.bucketMinutes * 60_000;
  const start = Date.parse(a.series[0]!.start);
  const span = Date.parse(a.series[a.series.length - 1]!.start) + step - start;
  const cols = Math.min(width, Math.round(span / step));
  const out = new Array<number>(cols).fill(0);
  for (const s of a.series) out[Math.min(cols - 1, Math.floor(((Date.parse(s.start) - start) / span) * cols))]! += s.s5xx;
  return out;
}

function topList(title: string, list: TopEntry[], approx: number): string[] {
  if (!list.length) return [];
  const w = Math.max(...list.map((e) => n(e.count).length));
  return [
    '',
    `${title}${approx ? `  (approximate: counts may be low by up to ${n(approx)})` : ''}`,
    ...list.map((e) => `  ${n(e.count).padStart(w)}  ${e.key}`),
  ];
}

export function formatAnalysis(a: Analysis): string {
  const out: string[] = [];
  const fmts = Object.entries(a.formats).filter(([, v]) => v > 0).map(([k, v]) => `${n(v)} ${k}`);
  out.push(`${n(a.lines)} lines: ${fmts.join(', ') || 'no access lines'}${a.unrecognised ? `; ${n(a.unrecognised)} unrecognised` : ''}${a.ignored ? `; ${n(a.ignored)} not requests` : ''}`);
  if (!a.first || !a.last) return `${out.join('\n')}\n`;
  out.push(
    `${utc(a.first)} → ${utc(a.last)} UTC: ${n(a.requests)} requests, ${n(a.status5xx)} 5xx (${pct(a.status5xx, a.requests)})` +
      (a.staleServed ? `, ${n(a.staleServed)} failures hidden by a stale copy` : '') +
      (a.backgroundFailures ? `, ${n(a.backgroundFailures)} failed background refreshes` : ''),
  );

  const unit = a.bucketMinutes === 1 ? 'minute' : `${a.bucketMinutes} minutes`;
  const peak = a.series.reduce((p, s) => (s.s5xx > p.s5xx ? s : p), a.series[0]!);
  const cols = columns(a);
  const line = sparkline(cols);
  const from = a.series[0]!.start;
  const to = new Date(Date.parse(a.series[a.series.length - 1]!.start) + a.bucketMinutes * 60_000).toISOString();
  const sameDay = from.slice(0, 10) === to.slice(0, 10);
  const [l, r] = sameDay ? [utc(from).slice(11), utc(to).slice(11)] : [utc(from), utc(to)];
  const perCol = Math.round((Date.parse(to) - Date.parse(from)) / 60_000 / Math.max(1, cols.length));
  out.push('', `5xx over time (peak ${n(peak.s5xx)} per ${unit} at ${utc(peak.start)}; one column = ${perCol} min)`);
  out.push(`  |${line}|`);
  out.push(`   ${l}${' '.repeat(Math.max(1, line.length - l.length - r.length))}${r}`);

  const rows = a.series.length <= MAX_ROWS ? a.series : a.series.filter((s) => s.s5xx > 0).slice(0, MAX_ROWS);
  const hidden = a.series.length <= MAX_ROWS ? 0 : a.series.filter((s) => s.s5xx > 0).length - rows.length;
  const maxV = Math.max(1, ...rows.map((r) => r.s5xx));
  out.push('', `${unit.padEnd(16)}  ${'requests'.padStart(9)}  ${'5xx'.padStart(7)}  ${'5xx %'.padStart(6)}`);
  if (a.series.length > MAX_ROWS) out.push(`  (${n(a.series.length)} ${unit} buckets; only those with 5xx are listed)`);
  for (const r of rows) {
    const bar = '█'.repeat(Math.round((r.s5xx / maxV) * 30));
    out.push(`${utc(r.start)}  ${n(r.requests).padStart(9)}  ${n(r.s5xx).padStart(7)}  ${pct(r.s5xx, r.requests).padStart(6)}  ${bar}`.trimEnd());
  }
  if (hidden > 0) out.push(`  … ${n(hidden)} more with 5xx (--json lists every bucket)`);

  out.push('', `Bursts (runs of ${unit} buckets with ≥ ${a.burstThreshold} 5xx per minute)`);
  if (!a.bursts.length) out.push('  none');
  for (const b of a.bursts.slice(0, 20)) {
    out.push(`  ${utc(b.start)} → ${utc(b.end).slice(11)} (${b.minutes} min): ${n(b.s5xx)} 5xx of ${n(b.requests)} requests${b.topFailure ? `, mostly ${b.topFailure}` : ''}`);
  }
  if (a.bursts.length > 20) out.push(`  … ${a.bursts.length - 20} more`);

  out.push(...topList('Top failures', a.failures, 0));
  out.push(...topList('Top backends (failures)', a.backends, a.approximate.backends));
  out.push(...topList('Top paths (failures)', a.paths, a.approximate.paths));

  const hinted = a.failures.filter((f) => f.hint);
  if (hinted.length) {
    out.push('', 'What to do');
    for (const f of hinted) out.push(`  ${f.key}: ${f.hint}`);
  }
  return `${out.join('\n')}\n`;
}

// The lab report as Markdown (docs/lab/REPORT.md): a summary table, the goals, where Lacquer is not best,
// and per scenario a table of the proxies with sparkline timelines of errors and p99 latency per second.
import { judge } from './goals.ts';
import type { RunResult } from './runner.ts';

export type ReportMeta = { generatedAt: string; short: boolean; machine: string; versions: string[]; skipped: string[]; failures: string[] };

const fmt = (n: number) => (Number.isInteger(n) ? String(n) : n.toFixed(1));
const pct = (x: number) => (x === 0 ? '0%' : x < 0.001 ? '<0.1%' : `${(x * 100).toFixed(1)}%`);

function counts(o: Record<string, number>): string {
  const e = Object.entries(o).sort((a, b) => b[1] - a[1]);
  return e.length ? e.map(([k, v]) => `${k} ×${v}`).join(', ') : '—';
}

const BARS = '▁▂▃▄▅▆▇█';

/** One character per second; ' ' = nothing, ▁…█ scaled to `max`. */
export function sparkline(values: readonly number[], max = Math.max(0, ...values)): string {
  return values.map((v) => (v <= 0 || max <= 0 ? '·' : BARS[Math.min(BARS.length - 1, Math.floor((v / max) * (BARS.length - 1e-9)))]!)).join('');
}

export function originCell(r: RunResult): string {
  const w = Object.entries(r.origin.watched)[0];
  if (w) return `${r.origin.total} (${w[0]} after expiry: ${w[1].duringFault})`;
  return `${r.origin.total} (${r.origin.duringFault} in fault)`;
}

/** One row per scenario × proxy: requests, errors, corrupted, origin requests, p99. */
export function summaryTable(results: readonly RunResult[]): string {
  const rows = [
    '| scenario | proxy | requests | errors | corrupted | origin requests | p50 ms | p99 ms | max ms |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of results) {
    const s = r.summary;
    rows.push(
      `| ${r.scenario} | ${r.target.label} | ${s.requests} | ${s.errors} (${pct(s.errorRate)}) | ${s.corrupted} | ${originCell(r)} | ${fmt(s.latency.p50)} | ${fmt(s.latency.p99)} | ${fmt(s.latency.max)} |`,
    );
  }
  return rows.join('\n');
}

/** Scenarios where another proxy did better than Lacquer on errors, corrupted bodies or herd origin requests. */
export function notBest(results: readonly RunResult[]): { scenario: string; lines: string[] }[] {
  const out: { scenario: string; lines: string[] }[] = [];
  for (const name of [...new Set(results.map((r) => r.scenario))]) {
    const rs = results.filter((r) => r.scenario === name);
    const mine = rs.find((r) => r.target.id === 'lacquer');
    if (!mine) continue;
    const lines: string[] = [];
    for (const o of rs.filter((r) => r.target.kind !== 'lacquer')) {
      const better: string[] = [];
      if (o.summary.errors < mine.summary.errors) better.push(`${o.summary.errors} errors vs Lacquer's ${mine.summary.errors} (Lacquer's: ${counts(mine.summary.errorsByClass)}; by status ${counts(mine.summary.errorsByStatus)})`);
      if (o.summary.corrupted < mine.summary.corrupted) better.push(`${o.summary.corrupted} corrupted vs ${mine.summary.corrupted}`);
      const w = Object.keys(mine.origin.watched)[0];
      if (w && (o.origin.watched[w]?.duringFault ?? Infinity) < mine.origin.watched[w]!.duringFault) {
        better.push(`${o.origin.watched[w]!.duringFault} origin requests for ${w} vs ${mine.origin.watched[w]!.duringFault}`);
      }
      const [p99, theirs] = [mine.summary.latency.p99, o.summary.latency.p99];
      if (mine.summary.errors === o.summary.errors && theirs * 1.5 < p99 && p99 - theirs > 10) {
        better.push(`same errors, p99 ${fmt(o.summary.latency.p99)} ms vs Lacquer's ${fmt(mine.summary.latency.p99)} ms`);
      }
      if (better.length) lines.push(`${o.target.label}: ${better.join('; ')}`);
    }
    if (lines.length) out.push({ scenario: name, lines });
  }
  return out;
}

function scenarioSection(index: number, rs: RunResult[]): string {
  const first = rs[0]!;
  const w = first.window;
  const seconds = first.summary.timeline.length;
  const out: string[] = [];
  out.push(`### ${index}. ${first.scenario}`, '', `${first.title}.`, '');
  out.push(`Fault window: ${fmt(w.faultFromMs / 1000)} s → ${fmt(w.faultToMs / 1000)} s of ${fmt(w.endMs / 1000)} s.`);
  const lq = rs.find((r) => r.target.id === 'lacquer');
  if (lq) {
    const v = judge(lq, rs);
    out.push(`Lacquer's goal: ${v.met === undefined ? 'n/a' : v.met ? '**met**' : '**not met**'} — ${v.text}.`);
  }
  out.push('');
  out.push('| proxy | requests | errors | by status | by Proxy-Status class | transport | corrupted | origin requests | p50 | p99 | max |');
  out.push('|---|---:|---:|---|---|---|---:|---:|---:|---:|---:|');
  for (const r of rs) {
    const s = r.summary;
    out.push(
      `| ${r.target.label} | ${s.requests} | ${s.errors} (${pct(s.errorRate)}) | ${counts(s.errorsByStatus)} | ${counts(s.errorsByClass)} | ${counts(s.errorsByTransport)} | ${s.corrupted} | ${originCell(r)} | ${fmt(s.latency.p50)} | ${fmt(s.latency.p99)} | ${fmt(s.latency.max)} |`,
    );
  }
  const degraded = rs.filter((r) => Object.keys(r.summary.degradedByClass).length);
  if (degraded.length) {
    out.push('', 'Answered 2xx despite a failure (Proxy-Status on a successful answer): ' + degraded.map((r) => `${r.target.label}: ${counts(r.summary.degradedByClass)}`).join('; ') + '.');
  }
  const maxErr = Math.max(1, ...rs.flatMap((r) => r.summary.timeline.map((t) => t.errors)));
  const maxP99 = Math.max(1, ...rs.flatMap((r) => r.summary.timeline.map((t) => t.p99)));
  const ruler = Array.from({ length: seconds }, (_, i) => (i * 1000 >= w.faultFromMs && i * 1000 < w.faultToMs ? '^' : ' ')).join('');
  out.push('', `Timeline, one character per second (errors/s scaled to ${maxErr}, p99/s scaled to ${fmt(maxP99)} ms; \`^\` marks the fault window):`, '', '```');
  const pad = Math.max(...rs.map((r) => r.target.label.length)) + 9;
  out.push(`${''.padEnd(pad)}${ruler}`);
  for (const r of rs) {
    out.push(`${`${r.target.label} errors`.padEnd(pad)}${sparkline(r.summary.timeline.map((t) => t.errors), maxErr)}`);
    out.push(`${`${r.target.label} p99`.padEnd(pad)}${sparkline(r.summary.timeline.map((t) => t.p99), maxP99)}`);
  }
  out.push('```');
  out.push('', `Configs: ${rs.map((r) => `[${r.config.fileName}](configs/${r.scenario}/${r.config.fileName})`).join(', ')}.`);
  const notes = rs.filter((r) => r.notes.length);
  if (notes.length) out.push('', `Run notes: ${notes.map((r) => `${r.target.label}: ${r.notes.join('; ')}`).join(' — ')}.`);
  return out.join('\n');
}

export function markdownReport(results: readonly RunResult[], meta: ReportMeta): string {
  const out: string[] = [];
  out.push('# Lacquer resilience lab: Lacquer, Varnish and nginx side by side', '');
  out.push(
    `Generated ${meta.generatedAt} by \`lacquer lab compare${meta.short ? ' --short' : ''}\` (${meta.short ? 'short' : 'full'} durations). ${meta.machine}`,
    '',
    `Versions: ${meta.versions.join('; ')}.`,
    '',
    'Each scenario runs the same origins (`lacquer lab origin`, one process per backend), the same faults at the same times and the same load ' +
      '(`src/lab/loadgen.ts`, a separate process) against each proxy in turn. Errors are what clients saw: any status outside 2xx/3xx, or no complete ' +
      'response (status 0: reset, truncated body, 10 s client timeout). Corrupted = a 2xx body that does not match the origin\'s `x-lab-checksum`. ' +
      'Origin requests come from the origins\' own counters. Latency is per request, start to last body byte. ' +
      '"tuned" configs are what an experienced operator would write for resilience; "defaults" keep every shipped default. ' +
      'The generated configs are in [configs/](configs/).',
    '',
  );
  if (meta.skipped.length) out.push(`Skipped: ${meta.skipped.join('; ')}.`, '');
  if (meta.failures.length) out.push(`Runs that failed: ${meta.failures.join('; ')}.`, '');
  out.push('## Summary', '', summaryTable(results), '');
  out.push('## Lacquer\'s goals', '', '| scenario | goal | result |', '|---|---|---|');
  for (const r of results.filter((x) => x.target.id === 'lacquer')) {
    const v = judge(r, results.filter((x) => x.scenario === r.scenario));
    out.push(`| ${r.scenario} | ${r.goal} | ${v.met === undefined ? 'n/a' : v.met ? 'met' : '**not met**'}: ${v.text} |`);
  }
  out.push('');
  const nb = notBest(results);
  out.push('## Where Lacquer is not best', '');
  if (nb.length === 0) out.push('Nowhere in this run.');
  for (const n of nb) out.push(`- **${n.scenario}**: ${n.lines.join(' — ')}`);
  out.push('');
  out.push('## Scenarios', '');
  const names = [...new Set(results.map((r) => r.scenario))];
  names.forEach((name, i) => {
    out.push(scenarioSection(i + 1, results.filter((r) => r.scenario === name)), '');
  });
  return out.join('\n');
}

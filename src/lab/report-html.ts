// The lab report as one self-contained HTML page (docs/lab/report.html): the Markdown report's tables,
// and per scenario inline-SVG charts of errors, p99 latency and origin requests per second for every
// proxy, with the fault window shaded. No script, no external resource.
import { judge } from './goals.ts';
import { notBest, originCell, type ReportMeta } from './report-markdown.ts';
import type { RunResult } from './runner.ts';

const COLORS: Record<string, string> = {
  lacquer: '#c0392b',
  'lacquer-default': '#e67e22',
  'varnish-tuned': '#2471a3',
  'varnish-default': '#85c1e9',
  'nginx-tuned': '#1e8449',
  'nginx-default': '#82e0aa',
};

const esc = (s: string) => s.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
const fmt = (n: number) => (Number.isInteger(n) ? String(n) : n.toFixed(1));

type Series = { label: string; color: string; values: number[] };

function niceMax(v: number): number {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** A line chart: one polyline per series over seconds 0…n-1, fault window shaded. */
export function svgChart(title: string, unit: string, series: Series[], fault: [number, number], seconds: number): string {
  const W = 560;
  const H = 190;
  const L = 52;
  const R = 10;
  const T = 22;
  const B = 26;
  const max = niceMax(Math.max(0, ...series.flatMap((s) => s.values)));
  const x = (i: number) => L + ((W - L - R) * i) / Math.max(1, seconds);
  const y = (v: number) => T + (H - T - B) * (1 - v / max);
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(title)}">`);
  parts.push(`<text x="${L}" y="14" font-size="12" font-weight="bold">${esc(title)}</text>`);
  parts.push(`<rect x="${x(fault[0])}" y="${T}" width="${Math.max(0, x(fault[1]) - x(fault[0]))}" height="${H - T - B}" fill="#f5b7b1" opacity="0.35"/>`);
  for (const f of [0, 0.5, 1]) {
    const v = max * f;
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/>`);
    parts.push(`<text x="${L - 4}" y="${y(v) + 4}" font-size="10" text-anchor="end">${fmt(v)}${unit}</text>`);
  }
  const step = seconds > 30 ? 10 : 5;
  for (let s = 0; s <= seconds; s += step) {
    parts.push(`<text x="${x(s)}" y="${H - 8}" font-size="10" text-anchor="middle">${s}s</text>`);
  }
  parts.push(`<line x1="${L}" x2="${L}" y1="${T}" y2="${H - B}" stroke="#888"/><line x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}" stroke="#888"/>`);
  for (const s of series) {
    // a point in the middle of each second
    const pts = s.values.map((v, i) => `${x(i + 0.5).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
    parts.push(`<polyline fill="none" stroke="${s.color}" stroke-width="1.6" points="${pts}"><title>${esc(s.label)}</title></polyline>`);
  }
  parts.push('</svg>');
  return parts.join('');
}

function legend(rs: RunResult[]): string {
  return `<p class="legend">${rs.map((r) => `<span><i style="background:${COLORS[r.target.id] ?? '#555'}"></i>${esc(r.target.label)}</span>`).join(' ')} <span><i style="background:#f5b7b1"></i>fault window</span></p>`;
}

const counts = (o: Record<string, number>) =>
  Object.entries(o).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${esc(k)}&nbsp;×${v}`).join(', ') || '—';

function scenarioHtml(i: number, rs: RunResult[]): string {
  const first = rs[0]!;
  const w = first.window;
  const seconds = first.summary.timeline.length;
  const fault: [number, number] = [w.faultFromMs / 1000, w.faultToMs / 1000];
  const lq = rs.find((r) => r.target.id === 'lacquer');
  const v = lq ? judge(lq, rs) : undefined;
  const series = (pick: (t: RunResult['summary']['timeline'][number]) => number) =>
    rs.map((r) => ({ label: r.target.label, color: COLORS[r.target.id] ?? '#555', values: r.summary.timeline.map(pick) }));
  const rows = rs
    .map((r) => {
      const s = r.summary;
      return `<tr><td>${esc(r.target.label)}</td><td>${s.requests}</td><td>${s.errors}</td><td>${counts(s.errorsByStatus)}</td><td>${counts(s.errorsByClass)}</td><td>${counts(s.errorsByTransport)}</td><td>${s.corrupted}</td><td>${esc(originCell(r))}</td><td>${fmt(s.latency.p50)}</td><td>${fmt(s.latency.p99)}</td><td>${fmt(s.latency.max)}</td><td>${rs.length ? `<a href="configs/${esc(r.scenario)}/${esc(r.config.fileName)}">${esc(r.config.fileName)}</a>` : ''}</td></tr>`;
    })
    .join('\n');
  return `<section>
<h2>${i}. ${esc(first.scenario)}</h2>
<p>${esc(first.title)}. Fault window ${fmt(fault[0])} s → ${fmt(fault[1])} s of ${fmt(w.endMs / 1000)} s.${v ? ` Lacquer's goal: <b>${v.met === undefined ? 'n/a' : v.met ? 'met' : 'not met'}</b> — ${esc(v.text)}.` : ''}</p>
<table><thead><tr><th>proxy</th><th>requests</th><th>errors</th><th>by status</th><th>by Proxy-Status class</th><th>transport</th><th>corrupted</th><th>origin requests</th><th>p50 ms</th><th>p99 ms</th><th>max ms</th><th>config</th></tr></thead>
<tbody>${rows}</tbody></table>
${legend(rs)}
<div class="charts">
${svgChart('client-visible errors per second', '', series((t) => t.errors), fault, seconds)}
${svgChart('p99 latency per second', ' ms', series((t) => t.p99), fault, seconds)}
${svgChart('origin requests per second', '', series((t) => t.origin ?? 0), fault, seconds)}
</div>
</section>`;
}

export function htmlReport(results: readonly RunResult[], meta: ReportMeta): string {
  const names = [...new Set(results.map((r) => r.scenario))];
  const summaryRows = results
    .map((r) => {
      const s = r.summary;
      return `<tr><td>${esc(r.scenario)}</td><td>${esc(r.target.label)}</td><td>${s.requests}</td><td>${s.errors}</td><td>${s.corrupted}</td><td>${esc(originCell(r))}</td><td>${fmt(s.latency.p50)}</td><td>${fmt(s.latency.p99)}</td></tr>`;
    })
    .join('\n');
  const goals = results
    .filter((r) => r.target.id === 'lacquer')
    .map((r) => {
      const v = judge(r, results.filter((x) => x.scenario === r.scenario));
      return `<tr><td>${esc(r.scenario)}</td><td>${r.goal}</td><td class="${v.met === false ? 'bad' : 'ok'}">${v.met === undefined ? 'n/a' : v.met ? 'met' : 'not met'}</td><td>${esc(v.text)}</td></tr>`;
    })
    .join('\n');
  const nb = notBest(results);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Lacquer resilience lab report</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0;font-size:13px}th,td{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f4f4f4}td:nth-child(n+2){font-variant-numeric:tabular-nums}.bad{color:#b03a2e;font-weight:bold}.ok{color:#1e8449}
.charts{display:flex;flex-wrap:wrap;gap:8px}.charts svg{border:1px solid #eee;background:#fff}
.legend span{margin-right:1em;white-space:nowrap}.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:middle}
section{margin-top:2em;border-top:1px solid #ddd}
</style></head><body>
<h1>Lacquer resilience lab: Lacquer, Varnish and nginx side by side</h1>
<p>Generated ${esc(meta.generatedAt)} by <code>lacquer lab compare${meta.short ? ' --short' : ''}</code> (${meta.short ? 'short' : 'full'} durations). ${esc(meta.machine)}</p>
<p>Versions: ${esc(meta.versions.join('; '))}.</p>
${meta.skipped.length ? `<p>Skipped: ${esc(meta.skipped.join('; '))}.</p>` : ''}
${meta.failures.length ? `<p class="bad">Runs that failed: ${esc(meta.failures.join('; '))}.</p>` : ''}
<p>Errors are what clients saw: a status outside 2xx/3xx, or no complete response (reset, truncated body, client timeout). Corrupted = a 2xx body that does not match the origin's checksum. Origin requests come from the origins' own counters.</p>
<h2>Summary</h2>
<table><thead><tr><th>scenario</th><th>proxy</th><th>requests</th><th>errors</th><th>corrupted</th><th>origin requests</th><th>p50 ms</th><th>p99 ms</th></tr></thead><tbody>
${summaryRows}
</tbody></table>
<h2>Lacquer's goals</h2>
<table><thead><tr><th>scenario</th><th>goal</th><th>result</th><th></th></tr></thead><tbody>${goals}</tbody></table>
<h2>Where Lacquer is not best</h2>
${nb.length ? `<ul>${nb.map((n) => `<li><b>${esc(n.scenario)}</b>: ${esc(n.lines.join(' — '))}</li>`).join('')}</ul>` : '<p>Nowhere in this run.</p>'}
${names.map((n, i) => scenarioHtml(i + 1, results.filter((r) => r.scenario === n))).join('\n')}
</body></html>
`;
}

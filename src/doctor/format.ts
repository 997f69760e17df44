// Doctor, human output: a compact table of measurements per backend, then its findings, worst first.
import { formatDuration, formatSize } from '../config/units.ts';
import { ms, SEVERITY_RANK, spread, type Finding } from './findings.ts';
import type { DoctorReport, TargetReport } from './run.ts';

const LABEL: Record<Finding['severity'], string> = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL' };

function spreadText(values: (number | undefined)[]): string {
  const s = spread(values.filter((v): v is number => v !== undefined));
  return s ? `${ms(s.min)} / ${ms(s.median)} / ${ms(s.max)}` : '-';
}

function wrap(text: string, width: number, indent: string): string {
  const words = text.split(' ');
  const lines: string[] = [];
  let cur = '';
  for (const w of words) {
    if (cur && cur.length + 1 + w.length > width) {
      lines.push(cur);
      cur = w;
    } else cur = cur ? `${cur} ${w}` : w;
  }
  if (cur) lines.push(cur);
  return lines.join(`\n${indent}`);
}

function table(rows: [string, string][]): string[] {
  const w = Math.max(...rows.map((r) => r[0].length));
  return rows.map(([k, v]) => `  ${k.padEnd(w)}  ${v}`);
}

/** What the probe path really answered (the header once printed the expected 200 next to a 404). */
function answered(r: TargetReport): string {
  const expected = r.target.probe.expectedStatus;
  const got = [...new Set((r.http?.samples ?? []).map((s) => s.status ?? s.error ?? '?'))];
  if (got.length === 0) return `no answer (expected ${expected})`;
  return got.length === 1 && got[0] === expected ? String(expected) : `${got.join(' / ')} (expected ${expected})`;
}

export function formatTarget(r: TargetReport): string {
  const t = r.target;
  const host = t.host.includes(':') ? `[${t.host}]` : t.host;
  const out = [`${t.name}  ${t.scheme}://${host}:${t.port}  probe GET ${t.probe.path} → ${answered(r)}${t.probe.configured ? '' : ' (probes off)'}  [${r.severity.toUpperCase()}]`];
  const rows: [string, string][] = [];
  rows.push(['dns', r.dns.error ? `${r.dns.host}: ${r.dns.error} (${ms(r.dns.ms)})` : `${r.dns.addresses.map((a) => `${a.address} v${a.family}`).join(', ')}  in ${ms(r.dns.ms)}`]);
  for (const c of r.tcp) rows.push(['connect', `${c.address.includes(':') ? `[${c.address}]` : c.address}:${c.port}  ${c.error ? `${c.error} after ${ms(c.ms)}` : ms(c.ms)}  (limit ${formatDuration(t.timeouts.connect)})`]);
  if (r.tls) {
    const s = r.tls;
    if (s.error) rows.push(['tls', `${s.error} after ${ms(s.ms)}`]);
    else {
      const c = s.cert;
      rows.push(['tls', `${s.protocol ?? '?'} ${s.cipher ?? ''} in ${ms(s.ms)}; SNI ${s.sni}${s.verifyError ? `; NOT VERIFIED: ${s.verifyError}` : '; verified'}`]);
      if (c) rows.push(['cert', `subject "${c.subject}", SAN ${c.san.join(' ') || '-'}, issuer "${c.issuer}", expires ${c.validTo.slice(0, 10)} (${c.daysLeft} days)`]);
    }
  }
  if (r.http) {
    const ss = r.http.samples;
    const statuses = ss.map((s) => (s.status ?? s.error ?? '?').toString()).join(' ');
    rows.push(['requests', `${ss.length}× GET ${t.probe.path} via ${r.http.address}: ${statuses}`]);
    rows.push(['first byte', `${spreadText(ss.map((s) => s.ttfbMs))}  min/median/max  (limit ${formatDuration(t.timeouts.first_byte)})`]);
    rows.push(['total', `${spreadText(ss.map((s) => s.totalMs))}  (body ${Math.max(0, ...ss.map((s) => s.bodyBytes))} bytes)`]);
    const head = Math.max(0, ...ss.map((s) => s.headerBytes ?? 0));
    rows.push(['head', `${head ? `${head} bytes` : '-'}  (limit ${formatSize(t.headerLimit)})`]);
    const ka = ss.find((s) => s.keepAliveS !== undefined)?.keepAliveS;
    const conn = ss.find((s) => s.connection)?.connection;
    rows.push(['keep-alive', `${ka !== undefined ? `timeout=${ka}s` : conn?.toLowerCase() === 'close' ? 'Connection: close' : 'not advertised'}  (idle ${formatDuration(t.timeouts.idle)})`]);
  }
  out.push(...table(rows));
  const sorted = [...r.findings].sort((a, b) => SEVERITY_RANK[b.severity] - SEVERITY_RANK[a.severity]);
  for (const f of sorted) {
    out.push(`  ${LABEL[f.severity]} ${f.check.padEnd(10)} ${wrap(f.message, 96, ' '.repeat(18))}`);
    if (f.fix && f.severity !== 'ok') out.push(`${' '.repeat(18)}fix: ${wrap(f.fix, 91, ' '.repeat(23))}`);
  }
  return out.join('\n');
}

export function formatReport(r: DoctorReport): string {
  const n = (s: Finding['severity']) => r.targets.filter((t) => t.severity === s).length;
  const parts = [`${n('fail')} failing`, `${n('warn')} with warnings`, `${n('ok')} ok`];
  const summary = `${r.targets.length} target${r.targets.length === 1 ? '' : 's'}: ${parts.join(', ')} → exit ${r.exitCode}`;
  return `${r.targets.map(formatTarget).join('\n\n')}\n\n${summary}\n`;
}

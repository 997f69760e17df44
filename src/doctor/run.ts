// Doctor: run the checks of one target in the order a connection goes through them (dns → tcp → tls →
// http), each bounded by the backend's own timeouts, then judge them (findings.ts).
import { resolveHost, type Lookup } from './dns.ts';
import { evaluate, SEVERITY_RANK, worst, type Finding, type Measurements, type Severity } from './findings.ts';
import { probeHttp } from './http.ts';
import type { Target } from './targets.ts';
import { connectTime } from './tcp.ts';
import { inspectTls } from './tls.ts';

export type DoctorOptions = {
  /** HTTP requests per target, for spread (default 3). */
  repeat?: number;
  /** Extra trusted CA certificates (PEM), like NODE_EXTRA_CA_CERTS for Lacquer. */
  ca?: string | Buffer | (string | Buffer)[];
  /** Injected resolver (tests). */
  lookup?: Lookup;
};

export type TargetReport = Measurements & { findings: Finding[]; severity: Severity };
export type DoctorReport = { targets: TargetReport[]; severity: Severity; exitCode: 0 | 1 | 2 };

export async function examine(target: Target, o: DoctorOptions = {}): Promise<TargetReport> {
  const m: Measurements = { target, dns: await resolveHost(target.host, o.lookup), tcp: [] };
  for (const a of m.dns.addresses) m.tcp.push(await connectTime(a.address, a.family, target.port, target.timeouts.connect));
  const reachable = m.tcp.find((r) => !r.error);
  if (reachable) {
    if (target.scheme === 'https') m.tls = await inspectTls(reachable.address, target.port, target.host, { timeoutMs: target.timeouts.connect, ca: o.ca });
    if (!m.tls?.error) {
      const samples = await probeHttp(
        {
          scheme: target.scheme,
          address: reachable.address,
          port: target.port,
          host: target.host,
          hostHeader: target.hostHeader,
          path: target.probe.path,
          timeouts: target.timeouts,
          headerLimit: target.headerLimit,
          ca: o.ca,
        },
        o.repeat ?? 3,
      );
      m.http = { address: reachable.address, samples };
    }
  }
  const findings = evaluate(m);
  return { ...m, findings, severity: worst(findings) };
}

export async function runDoctor(targets: Target[], o: DoctorOptions = {}): Promise<DoctorReport> {
  const reports = await Promise.all(targets.map((t) => examine(t, o)));
  const severity = reports.reduce<Severity>((w, r) => (SEVERITY_RANK[r.severity] > SEVERITY_RANK[w] ? r.severity : w), 'ok');
  return { targets: reports, severity, exitCode: SEVERITY_RANK[severity] as 0 | 1 | 2 };
}

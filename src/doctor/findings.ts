// Doctor, the verdict: compare what was measured with the configuration and say, in words, what will
// break, how badly (ok / warn / fail) and what to change. Class names, plain sentences and hints come
// from src/errors.ts (FAILURES.md) so the doctor speaks like the access log.
import { classifyFetchError, HINTS, PLAIN, type ErrorType } from '../errors.ts';
import { formatDuration, formatSize } from '../config/units.ts';
import type { DnsResult } from './dns.ts';
import type { HttpSample } from './http.ts';
import type { Target } from './targets.ts';
import type { TcpResult } from './tcp.ts';
import type { TlsResult } from './tls.ts';

export type Severity = 'ok' | 'warn' | 'fail';
export type Check = 'dns' | 'connect' | 'tls' | 'http' | 'first_byte' | 'headers' | 'keepalive' | 'status';

export type Finding = {
  severity: Severity;
  check: Check;
  /** What was found, in words. */
  message: string;
  /** What to change. Absent on `ok`. */
  fix?: string;
  /** The RFC 9209 class Lacquer would report for this, when it would fail a request. */
  class?: ErrorType;
};

export type Measurements = {
  target: Target;
  dns: DnsResult;
  tcp: TcpResult[];
  tls?: TlsResult;
  /** The address the HTTP probe (and TLS) used: the first that accepted a connection. */
  http?: { address: string; samples: HttpSample[] };
};

/** Warn when a measured time uses more than this share of its timeout. */
export const NEAR_TIMEOUT = 0.5;
/** Warn when the response head uses more than this share of `limits.response_header_size`. */
export const NEAR_HEADER_LIMIT = 0.75;
/** Warn when the certificate expires within this many days. */
export const CERT_WARN_DAYS = 14;
/** Warn when resolving the name takes longer than this: every new connection pays it. */
export const SLOW_DNS_MS = 500;

export const SEVERITY_RANK: Record<Severity, number> = { ok: 0, warn: 1, fail: 2 };

export function ms(v: number | undefined): string {
  if (v === undefined) return '-';
  if (v >= 1000) return `${(v / 1000).toFixed(2)}s`;
  return v >= 10 ? `${Math.round(v)}ms` : `${v.toFixed(1)}ms`;
}

export function spread(values: number[]): { min: number; median: number; max: number } | undefined {
  if (!values.length) return undefined;
  const s = [...values].sort((a, b) => a - b);
  return { min: s[0]!, median: s[Math.floor((s.length - 1) / 2)]!, max: s[s.length - 1]! };
}

const classed = (type: ErrorType, check: Check, message: string, fix = HINTS[type]): Finding => ({ severity: 'fail', check, message, fix, class: type });

function classify(code: string, t: Target, sample?: HttpSample): ErrorType {
  const err = Object.assign(new Error(code), { code });
  return classifyFetchError(err, {
    backend: t.name,
    timeouts: t.timeouts,
    elapsedMs: sample?.totalMs ?? 0,
    headersReceived: sample?.headersReceived ?? false,
    bytesReceived: sample?.bodyBytes ?? 0,
    requestSent: sample?.requestSent ?? false,
  }).type;
}

function dnsFindings(m: Measurements): Finding[] {
  const d = m.dns;
  if (d.error) {
    const type: ErrorType = d.error === 'EAI_AGAIN' ? 'dns_timeout' : 'dns_error';
    return [classed(type, 'dns', `"${d.host}" resolves to nothing (${d.error}): every request to ${m.target.name} fails ${type}.`, `${HINTS[type]} Check the host in backends[].url.`)];
  }
  const list = d.addresses.map((a) => `${a.address} (IPv${a.family})`).join(', ');
  if (d.ms > SLOW_DNS_MS) {
    return [{ severity: 'warn', check: 'dns', message: `"${d.host}" took ${ms(d.ms)} to resolve (to ${list}); every new connection pays it.`, fix: HINTS.dns_timeout }];
  }
  return [{ severity: 'ok', check: 'dns', message: `"${d.host}" resolves to ${list} in ${ms(d.ms)}.` }];
}

function connectFindings(m: Measurements): Finding[] {
  const { tcp, target: t } = m;
  if (!tcp.length) return [];
  const bad = tcp.filter((r) => r.error);
  const out: Finding[] = [];
  if (bad.length === tcp.length) {
    const type = classify(bad[0]!.error!, t);
    const where = tcp.map((r) => `${r.address}:${r.port}`).join(', ');
    const what = type === 'connection_refused' ? 'nothing is listening' : type === 'connection_timeout' ? `no answer within connect ${formatDuration(t.timeouts.connect)}` : bad[0]!.error;
    return [classed(type, 'connect', `${where}: ${what} (${bad[0]!.error}). Every request to ${t.name} fails ${type}.`)];
  }
  for (const r of bad) {
    const type = classify(r.error!, t);
    out.push({
      severity: 'warn',
      check: 'connect',
      message: `${r.address}:${r.port} (IPv${r.family}) fails (${r.error}) while another address of "${m.dns.host}" works: connections that try it first fail ${type} or pay a fallback delay.`,
      fix: `Make the origin listen on every address the name resolves to, or point the backend at an address that works. ${HINTS[type]}`,
      class: type,
    });
  }
  const ok = tcp.filter((r) => !r.error);
  const slowest = Math.max(...ok.map((r) => r.ms));
  if (slowest > NEAR_TIMEOUT * t.timeouts.connect) {
    out.push({
      severity: 'warn',
      check: 'connect',
      message: `TCP connect took ${ms(slowest)}, ${Math.round((100 * slowest) / t.timeouts.connect)}% of timeouts.connect (${formatDuration(t.timeouts.connect)}).`,
      fix: `Check the network path, or raise timeouts.connect for ${t.name}. ${HINTS.connection_timeout}`,
      class: 'connection_timeout',
    });
  } else if (!bad.length) out.push({ severity: 'ok', check: 'connect', message: `TCP connect in ${ms(slowest)} (timeouts.connect ${formatDuration(t.timeouts.connect)}).` });
  return out;
}

function tlsFindings(m: Measurements): Finding[] {
  const s = m.tls;
  if (!s) return [];
  if (s.error) {
    const type = classify(s.error, m.target);
    return [classed(type, 'tls', `TLS handshake with ${s.address}:${m.target.port} failed (${s.error}): ${PLAIN[type]}`)];
  }
  const out: Finding[] = [];
  const c = s.cert;
  const who = c ? `certificate "${c.subject}" (issuer "${c.issuer}")` : 'the certificate';
  if (c && c.daysLeft < 0) {
    out.push(classed('tls_certificate_error', 'tls', `The ${who} expired on ${c.validTo.slice(0, 10)}: Lacquer refuses the handshake (CERT_HAS_EXPIRED).`, `Renew it now. ${HINTS.tls_certificate_error}`));
  } else if (c && c.daysLeft < CERT_WARN_DAYS) {
    out.push({
      severity: 'warn',
      check: 'tls',
      message: `The ${who} expires in ${c.daysLeft} day${c.daysLeft === 1 ? '' : 's'} (${c.validTo.slice(0, 10)}); after that every request fails tls_certificate_error.`,
      fix: 'Renew the certificate (and check that automatic renewal runs).',
      class: 'tls_certificate_error',
    });
  }
  if (s.verifyError && s.verifyError !== 'CERT_HAS_EXPIRED') {
    out.push(classed('tls_certificate_error', 'tls', `The ${who} does not verify (${s.verifyError}): Lacquer refuses the handshake.`, `${HINTS.tls_certificate_error} For a private CA, start Lacquer with NODE_EXTRA_CA_CERTS pointing at it.`));
  }
  if (s.nameError) {
    out.push(classed('tls_certificate_error', 'tls', `The ${who} does not cover "${m.target.host}" (${s.nameError}; SAN ${c?.san.join(', ') || 'none'}).`, `Use a backend URL whose host is in the certificate, or reissue it with that name. ${HINTS.tls_certificate_error}`));
  }
  if (!out.length) {
    const sni = s.sni === 'n/a' ? 'no SNI (IP address)' : s.sni === 'same' ? 'SNI does not change the certificate' : `SNI matters (without it: ${s.sni === 'required' ? 'no handshake' : 'another certificate'}); Lacquer sends "${s.servername}"`;
    out.push({ severity: 'ok', check: 'tls', message: `${s.protocol ?? 'TLS'}, ${who}, valid ${c?.daysLeft ?? '?'} more days; ${sni}.` });
  }
  return out;
}

function httpFindings(m: Measurements): Finding[] {
  const h = m.http;
  if (!h || !h.samples.length) return [];
  const t = m.target;
  const out: Finding[] = [];
  const n = h.samples.length;
  const req = `GET ${t.probe.path}`;

  // Request failures other than a first-byte timeout (judged with the timings below).
  const failed = h.samples.filter((s) => s.error && s.error !== 'UND_ERR_HEADERS_TIMEOUT');
  const byClass = new Map<ErrorType, HttpSample[]>();
  for (const s of failed) {
    const type = classify(s.error!, t, s);
    byClass.set(type, [...(byClass.get(type) ?? []), s]);
  }
  for (const [type, list] of byClass) {
    if (type === 'http_response_header_section_size') continue; // reported by the head-size check
    // A TLS port answers plain HTTP with a reset or TLS bytes: name the likely mix-up.
    const tlsPort = t.scheme === 'http' && (type === 'connection_terminated' || type === 'http_protocol_error') && list.length === n;
    const also = tlsPort ? ' If this port speaks TLS, use an https:// backend URL.' : '';
    out.push(classed(type, 'http', `${req}: ${list.length} of ${n} request${n === 1 ? '' : 's'} failed ${type} (${list[0]!.error}): ${PLAIN[type]}${also}`));
  }

  // First byte against timeouts.first_byte.
  const fb = t.timeouts.first_byte;
  const timedOut = h.samples.filter((s) => s.error === 'UND_ERR_HEADERS_TIMEOUT');
  const ttfb = spread(h.samples.flatMap((s) => (s.ttfbMs === undefined ? [] : [s.ttfbMs])));
  if (timedOut.length) {
    out.push(classed('http_response_timeout', 'first_byte', `${req}: no response head within first_byte ${formatDuration(fb)} (${timedOut.length} of ${n}); every such request fails http_response_timeout.`, `Raise timeouts.first_byte for ${t.name} above the slowest response, or make ${t.probe.path} faster. ${HINTS.http_response_timeout}`));
  } else if (ttfb && ttfb.max > NEAR_TIMEOUT * fb) {
    out.push({
      severity: 'warn',
      check: 'first_byte',
      message: `${req}: first byte took up to ${ms(ttfb.max)}, ${Math.round((100 * ttfb.max) / fb)}% of timeouts.first_byte (${formatDuration(fb)}); a little more load and requests fail http_response_timeout.`,
      fix: `Give ${t.name} (or the route) a first_byte of at least ${formatDuration(Math.ceil((3 * ttfb.max) / 1000) * 1000)}, or make ${t.probe.path} faster.`,
      class: 'http_response_timeout',
    });
  } else if (ttfb) out.push({ severity: 'ok', check: 'first_byte', message: `first byte ${ms(ttfb.median)} median, ${ms(ttfb.max)} max (timeouts.first_byte ${formatDuration(fb)}).` });

  // Response head size against limits.response_header_size.
  const overflow = h.samples.some((s) => s.error === 'HPE_HEADER_OVERFLOW');
  const head = Math.max(0, ...h.samples.map((s) => s.headerBytes ?? 0));
  const limit = t.headerLimit;
  if (overflow || head > limit) {
    out.push(classed('http_response_header_section_size', 'headers', `${req}: response head is ${overflow ? 'larger than the doctor reads' : `${head} bytes`}, over limits.response_header_size (${formatSize(limit)} = ${limit} bytes): every such response fails http_response_header_section_size.`, `${HINTS.http_response_header_section_size} The limit must exceed ${head} bytes (e.g. ${formatSize(Math.ceil((head * 1.5) / 16384) * 16384)}).`));
  } else if (head > NEAR_HEADER_LIMIT * limit) {
    out.push({
      severity: 'warn',
      check: 'headers',
      message: `${req}: response head is ${head} bytes, ${Math.round((100 * head) / limit)}% of limits.response_header_size (${formatSize(limit)}); one more cookie and it fails http_response_header_section_size.`,
      fix: HINTS.http_response_header_section_size,
      class: 'http_response_header_section_size',
    });
  } else if (head) out.push({ severity: 'ok', check: 'headers', message: `response head ${head} bytes (limit ${formatSize(limit)}).` });

  // The keep-alive race: the origin closing an idle connection just as Lacquer reuses it.
  const ka = h.samples.map((s) => s.keepAliveS).filter((v): v is number => v !== undefined);
  const idle = t.timeouts.idle;
  if (ka.length) {
    const adv = Math.min(...ka);
    if (adv * 1000 <= idle) {
      // undici (src/upstream/backend.ts) keeps an idle socket min(hint − 1s threshold, idle); ≤ 0 means no reuse at all.
      const lowered = adv * 1000 - 1000;
      const survival =
        lowered > 0
          ? ` Lacquer lowers its idle time on this hint (to ${formatDuration(lowered)}) and retries a stale keep-alive once, so it survives — as long as the header arrives and the origin keeps its word.`
          : ' On this hint Lacquer stops reusing connections: no race, but every request pays a new connection — and if an intermediary drops the header, the race is back.';
      const suggest = adv === 0 ? 100 : Math.max(adv * 1000 - 1000, adv * 500);
      out.push({
        severity: 'warn',
        check: 'keepalive',
        message: `The origin advertises Keep-Alive: timeout=${adv} (${adv}s), not above timeouts.idle (${formatDuration(idle)}): Lacquer's idle connections outlive the origin's, so a request can go out on a connection the origin is closing — the keep-alive race (connection_terminated).${survival}`,
        fix: `Set timeouts.idle for ${t.name} below ${adv}s (e.g. ${formatDuration(suggest)}), or raise the origin's keep-alive timeout above ${formatDuration(idle)}.`,
        class: 'connection_terminated',
      });
    } else out.push({ severity: 'ok', check: 'keepalive', message: `origin keep-alive timeout ${adv}s > timeouts.idle ${formatDuration(idle)}.` });
  } else if (h.samples.some((s) => s.connection?.toLowerCase() === 'close')) {
    out.push({ severity: 'ok', check: 'keepalive', message: 'the origin closes the connection after each response: no keep-alive race, but every request pays a new connection.' });
  } else if (h.samples.some((s) => s.status !== undefined)) {
    out.push({ severity: 'ok', check: 'keepalive', message: `the origin does not advertise its keep-alive timeout; make sure it is above timeouts.idle (${formatDuration(idle)}).` });
  }

  // The probe path against expected_status.
  const statuses = h.samples.flatMap((s) => (s.status === undefined ? [] : [s.status]));
  const wrong = statuses.filter((s) => s !== t.probe.expectedStatus);
  if (wrong.length) {
    const got = [...new Set(wrong)].join(', ');
    const origin5xx = wrong.some((s) => s >= 500) ? ` The origin itself answered ${got} (received-status, not a fetch failure).` : '';
    out.push({
      severity: t.probe.configured ? 'fail' : 'warn',
      check: 'status',
      message: `${req} answered ${got} (${wrong.length} of ${statuses.length}), expected ${t.probe.expectedStatus}${t.probe.configured ? ': health probes mark the backend sick' : ' (health probes are off; enabled as they are, they would mark the backend sick)'}.${origin5xx}`,
      fix: t.probe.configured
        ? `Fix ${t.probe.path} on the origin, or set the probe's path / expected_status to what a healthy ${t.name} answers.`
        : `Before enabling probes, point probes.path (or the pool's probe.path) at a path that answers ${t.probe.expectedStatus}, or set expected_status.`,
    });
  } else if (statuses.length) out.push({ severity: 'ok', check: 'status', message: `${req} answered ${t.probe.expectedStatus} ${statuses.length}/${statuses.length}.` });
  return out;
}

/** Every finding for one target, in the order of the exchange: dns, connect, tls, http. */
export function evaluate(m: Measurements): Finding[] {
  return [...dnsFindings(m), ...connectFindings(m), ...tlsFindings(m), ...httpFindings(m)];
}

export function worst(findings: readonly Finding[]): Severity {
  return findings.reduce<Severity>((w, f) => (SEVERITY_RANK[f.severity] > SEVERITY_RANK[w] ? f.severity : w), 'ok');
}

// Doctor, step 3 (https only): the TLS handshake as Lacquer would do it, then the facts an operator needs
// when it fails (FAILURES.md tls_*): protocol, certificate subject/SAN, issuer, days to expiry, whether
// the chain verifies, whether the name matches, and whether SNI matters — a second handshake without
// SNI shows if the origin serves another certificate (or none) to clients that do not send it.
import { isIP } from 'node:net';
import { performance } from 'node:perf_hooks';
import tls, { type DetailedPeerCertificate } from 'node:tls';

export type CertInfo = {
  subject: string;
  san: string[];
  issuer: string;
  validTo: string;
  /** Negative once expired. */
  daysLeft: number;
  fingerprint: string;
  selfSigned: boolean;
};

export type TlsResult = {
  address: string;
  servername: string | undefined;
  ms: number;
  protocol?: string;
  cipher?: string;
  cert?: CertInfo;
  /** null when the chain verifies; else OpenSSL's reason, e.g. DEPTH_ZERO_SELF_SIGNED_CERT, CERT_HAS_EXPIRED. */
  verifyError?: string | null;
  /** The certificate does not cover the host name (ERR_TLS_CERT_ALTNAME_INVALID). */
  nameError?: string;
  /** Handshake failure code when there was no handshake at all. */
  error?: string;
  /** `n/a` for IP literals (no SNI is sent); `same` certificate either way; `different` certificate without SNI; `required`: no handshake without SNI. */
  sni: 'n/a' | 'same' | 'different' | 'required';
};

export type TlsOptions = { timeoutMs: number; ca?: string | Buffer | (string | Buffer)[]; now?: number };

type Handshake = { ms: number; socket?: tls.TLSSocket; error?: string };

function handshake(address: string, port: number, servername: string | undefined, o: TlsOptions): Promise<Handshake> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    // Verification is judged below (authorizationError), not enforced, so the facts are still shown for a bad certificate.
    const ca = o.ca === undefined ? undefined : [...tls.rootCertificates, ...(Array.isArray(o.ca) ? o.ca : [o.ca])];
    const socket = tls.connect({ host: address, port, servername, rejectUnauthorized: false, ca, ALPNProtocols: ['http/1.1'] });
    let tcpAt = t0;
    const timer = setTimeout(() => finish('ETIMEDOUT'), o.timeoutMs);
    socket.once('connect', () => (tcpAt = performance.now()));
    socket.once('secureConnect', () => finish());
    socket.once('error', (e: NodeJS.ErrnoException) => finish(e.code ?? 'UNKNOWN'));
    function finish(error?: string): void {
      clearTimeout(timer);
      const ms = performance.now() - tcpAt;
      if (error) {
        socket.destroy();
        resolve({ ms, error });
      } else resolve({ ms, socket });
    }
  });
}

function name(o: Record<string, string | string[] | undefined> | undefined): string {
  if (!o) return '';
  const v = o.CN ?? o.O ?? Object.values(o)[0];
  return Array.isArray(v) ? v.join(', ') : (v ?? '');
}

function certInfo(c: DetailedPeerCertificate, now: number): CertInfo {
  const validTo = Date.parse(c.valid_to);
  return {
    subject: name(c.subject as unknown as Record<string, string>),
    san: (c.subjectaltname ?? '').split(',').map((s) => s.trim()).filter(Boolean),
    issuer: name(c.issuer as unknown as Record<string, string>),
    validTo: new Date(validTo).toISOString(),
    daysLeft: Math.floor((validTo - now) / 86_400_000),
    fingerprint: c.fingerprint256,
    selfSigned: c.fingerprint256 === c.issuerCertificate?.fingerprint256 || JSON.stringify(c.subject) === JSON.stringify(c.issuer),
  };
}

export async function inspectTls(address: string, port: number, host: string, o: TlsOptions): Promise<TlsResult> {
  const servername = isIP(host) ? undefined : host;
  const first = await handshake(address, port, servername, o);
  const base = { address, servername, ms: first.ms };
  if (!first.socket) return { ...base, error: first.error, sni: servername ? 'required' : 'n/a' };
  const s = first.socket;
  const peer = s.getPeerCertificate(true);
  const cert = peer && peer.fingerprint256 ? certInfo(peer, o.now ?? Date.now()) : undefined;
  const nameErr = cert ? tls.checkServerIdentity(host, peer) : undefined;
  const out: TlsResult = {
    ...base,
    protocol: s.getProtocol() ?? undefined,
    cipher: s.getCipher()?.name,
    cert,
    verifyError: s.authorized ? null : String(s.authorizationError ?? 'UNKNOWN'),
    nameError: nameErr ? ((nameErr as NodeJS.ErrnoException).code ?? nameErr.message) : undefined,
    sni: 'n/a',
  };
  s.destroy();
  if (servername) {
    const bare = await handshake(address, port, undefined, o);
    if (!bare.socket) out.sni = 'required';
    else {
      out.sni = bare.socket.getPeerCertificate().fingerprint256 === cert?.fingerprint ? 'same' : 'different';
      bare.socket.destroy();
    }
  }
  return out;
}

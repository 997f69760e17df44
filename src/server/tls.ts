// TLS termination for client listeners: certificates from PEM files (chain included), chosen by SNI with
// the first as default, Mozilla "intermediate" settings, session resumption, and certificates swapped on
// reload without touching the connections already open. The same file checks feed `lacquer check` and
// `lacquer doctor`.
import { createPrivateKey, randomBytes, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import type { ListenerConfig } from '../config/schema.ts';

export type CertificateFiles = { cert: string; key: string };
export type ListenerTlsConfig = NonNullable<ListenerConfig['tls']>;

/**
 * Mozilla "intermediate" (https://ssl-config.mozilla.org/, guideline 5.7): the TLS 1.3 suites, then ECDHE
 * with AEAD ciphers for TLS 1.2. The DHE suites of that list are left out: Node has no DH parameters unless
 * given a file, so they would never be chosen. The client's order is honoured, as the guideline says.
 */
export const INTERMEDIATE_CIPHERS = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

/** Warn when a listener certificate expires within this many days (like the doctor does for origins). */
export const EXPIRY_WARN_DAYS = 14;

/** A TLS handshake that takes longer than this is dropped (Node's default is 120 s, a slowloris gift). */
const HANDSHAKE_TIMEOUT_MS = 10_000;

export type CertificateInfo = {
  cert: string;
  key: string;
  subject: string;
  /** DNS names and IP addresses the certificate covers. */
  names: string[];
  issuer: string;
  validTo: string;
  /** Negative once expired. */
  daysLeft: number;
  /** Certificates in the file: the leaf and its intermediates. */
  chain: number;
  fingerprint: string;
};

type Loaded = { info: CertificateInfo; x509: X509Certificate; certPem: Buffer; keyPem: Buffer };

function readPem(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new Error(`${what} file ${path} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}

function commonName(dn: string): string {
  return /(?:^|\n)CN=([^\n]*)/.exec(dn)?.[1] ?? dn.split('\n')[0] ?? '';
}

/** Reads and checks one pair; throws an Error saying which file is wrong and how. */
function load(files: CertificateFiles, now: number): Loaded {
  const certPem = readPem(files.cert, 'certificate');
  const keyPem = readPem(files.key, 'key');
  const blocks = certPem.toString('latin1').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw Object.assign(new Error(`${files.cert} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`), { field: 'cert' });
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(blocks[0]!);
  } catch (err) {
    throw Object.assign(new Error(`${files.cert}: the certificate does not parse (${(err as Error).message})`), { field: 'cert' });
  }
  let key;
  try {
    key = createPrivateKey(keyPem);
  } catch (err) {
    throw Object.assign(new Error(`${files.key}: the private key does not parse (${(err as Error).message}; encrypted keys are not supported)`), { field: 'key' });
  }
  if (!x509.checkPrivateKey(key)) throw Object.assign(new Error(`${files.key} is not the key of ${files.cert} (they do not match)`), { field: 'key' });
  const validTo = Date.parse(x509.validTo);
  const names = (x509.subjectAltName ?? '')
    .split(', ')
    .map((s) => s.replace(/^(DNS|IP Address):/, ''))
    .filter(Boolean);
  return {
    x509,
    certPem,
    keyPem,
    info: {
      cert: files.cert,
      key: files.key,
      subject: commonName(x509.subject),
      names,
      issuer: commonName(x509.issuer),
      validTo: new Date(validTo).toISOString(),
      daysLeft: Math.floor((validTo - now) / 86_400_000),
      chain: blocks.length,
      fingerprint: x509.fingerprint256,
    },
  };
}

/** Config-time check of one pair (files exist, parse, key matches): problems as schema issues. */
export function certificateProblems(files: CertificateFiles): { field: 'cert' | 'key'; message: string }[] {
  try {
    load(files, Date.now());
    return [];
  } catch (err) {
    const field = (err as { field?: 'cert' | 'key' }).field ?? (/^key file/.test((err as Error).message) ? 'key' : 'cert');
    return [{ field, message: (err as Error).message }];
  }
}

/** Facts about every listener certificate (for `lacquer doctor`); a pair that does not load carries its error. */
export function describeListenerCertificates(listeners: readonly ListenerConfig[], now = Date.now()): { listener: string; info?: CertificateInfo; error?: string; files: CertificateFiles }[] {
  return listeners.flatMap((l) =>
    (l.tls?.certificates ?? []).map((c) => {
      try {
        return { listener: l.address, files: c, info: load(c, now).info };
      } catch (err) {
        return { listener: l.address, files: c, error: (err as Error).message };
      }
    }),
  );
}

/** Expiry warnings for `lacquer check` and the start log: expired, or expiring within EXPIRY_WARN_DAYS. */
export function certificateWarnings(listeners: readonly ListenerConfig[], now = Date.now()): string[] {
  const out: string[] = [];
  for (const c of describeListenerCertificates(listeners, now)) {
    const i = c.info;
    if (!i) continue;
    if (i.daysLeft < 0) out.push(`listener ${c.listener}: certificate ${i.cert} ("${i.subject}") EXPIRED on ${i.validTo.slice(0, 10)}: clients refuse it`);
    else if (i.daysLeft < EXPIRY_WARN_DAYS) out.push(`listener ${c.listener}: certificate ${i.cert} ("${i.subject}") expires on ${i.validTo.slice(0, 10)}, in ${i.daysLeft} days: renew it, then reload`);
  }
  return out;
}

type Ready = { contexts: { x509: X509Certificate; context: tls.SecureContext }[]; defaultOptions: tls.SecureContextOptions };

function build(t: ListenerTlsConfig): Ready {
  const now = Date.now();
  const contexts: Ready['contexts'] = [];
  let defaultOptions: tls.SecureContextOptions | undefined;
  for (const files of t.certificates) {
    const l = load(files, now);
    const options: tls.SecureContextOptions = { cert: l.certPem, key: l.keyPem, ciphers: INTERMEDIATE_CIPHERS, minVersion: t.min_version, honorCipherOrder: false };
    defaultOptions ??= options;
    contexts.push({ x509: l.x509, context: tls.createSecureContext(options) });
  }
  return { contexts, defaultOptions: defaultOptions! };
}

/**
 * The TLS layer of one listener. It does not listen itself: the listener hands it accepted sockets
 * (after a PROXY header, if any), and it hands back handshaken sockets with their ALPN protocol.
 */
export class TlsTerminator {
  readonly server: tls.Server;
  #ready: Ready;
  /**
   * Session resumption (TLS 1.3 and 1.2 tickets) is keyed by these: made once per listener and given to
   * every context, so tickets issued before a certificate reload still resume after it.
   */
  readonly #ticketKeys = randomBytes(48);

  constructor(t: ListenerTlsConfig, alpn: string[], onSecure: (socket: tls.TLSSocket) => void) {
    this.#ready = build(t);
    this.server = tls.createServer({
      ...this.#ready.defaultOptions,
      ticketKeys: this.#ticketKeys,
      ALPNProtocols: alpn,
      handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
      SNICallback: (name, cb) => cb(null, this.#select(name)),
    });
    this.server.on('secureConnection', (s: tls.TLSSocket) => {
      const parent = parentOf(s);
      // A PROXY protocol address set on the accepted socket travels to the TLS socket the pipeline sees.
      if (parent && Object.hasOwn(parent, 'remoteAddress')) copyPeer(parent, s);
      // The accepted socket is only a shell once TLS owns its handle: it would outlive the connection
      // (and hold the listener's close) unless it goes with the TLS socket.
      s.once('close', () => parent?.destroy());
      onSecure(s);
    });
    // Failed handshakes (scanners, wrong protocol, timeouts) close the socket; nothing to answer.
    this.server.on('tlsClientError', (_err, s) => {
      s.destroy();
      parentOf(s)?.destroy();
    });
  }

  /** Feeds an accepted TCP socket to the handshake. */
  accept(socket: import('node:net').Socket): void {
    this.server.emit('connection', socket);
  }

  /** Re-reads the certificate files: new handshakes get them, open connections keep theirs. Throws if a file is bad. */
  reload(t: ListenerTlsConfig): void {
    const next = build(t);
    this.server.setSecureContext({ ...next.defaultOptions, ticketKeys: this.#ticketKeys });
    this.#ready = next;
  }

  /** RFC 6066 §3: the first certificate whose names cover the SNI host name, else the default (first). */
  #select(name: string): tls.SecureContext {
    const r = this.#ready;
    for (const c of r.contexts) if (c.x509.checkHost(name) !== undefined) return c.context;
    return r.contexts[0]!.context;
  }
}

function parentOf(s: tls.TLSSocket): import('node:net').Socket | undefined {
  return (s as unknown as { _parent?: import('node:net').Socket })._parent;
}

/** Gives `to` the peer address of `from` (a PROXY protocol client address set as own properties). */
export function copyPeer(from: object, to: object): void {
  const f = from as { remoteAddress?: string; remotePort?: number; remoteFamily?: string };
  Object.defineProperties(to, {
    remoteAddress: { value: f.remoteAddress, configurable: true },
    remotePort: { value: f.remotePort, configurable: true },
    remoteFamily: { value: f.remoteFamily, configurable: true },
  });
}

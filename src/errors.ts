// The one error type of the proxy (habit 2 of STYLE.md): every failed or degraded fetch becomes a ProxyError
// carrying its RFC 9209 class (../shared/FAILURES.md), phase, source, raw code, backend and timings.
// One function (classifyFetchError) maps Node/undici errors to a class by `code`, never by message text;
// one function (pipeline/synth.ts) turns a ProxyError into a response.
import { formatSize } from './config/units.ts';

/** RFC 9209 error types Lacquer reports, as named in FAILURES.md. */
export const ERROR_TYPES = [
  'dns_error',
  'dns_timeout',
  'connection_refused',
  'connection_timeout',
  'tls_certificate_error',
  'tls_protocol_error',
  'tls_alert_received',
  'connection_limit_reached',
  'destination_unavailable',
  'connection_terminated',
  'http_response_timeout',
  'connection_read_timeout',
  'http_response_incomplete',
  'http_protocol_error',
  'http_response_header_section_size',
  'connection_write_timeout',
  'http_request_error',
  'proxy_internal_error',
  'proxy_configuration_error',
] as const;
export type ErrorType = (typeof ERROR_TYPES)[number];

/** Where in the exchange with the origin the failure happened. */
export type Phase = 'route' | 'choose' | 'queue' | 'coalesce' | 'dns' | 'connect' | 'tls' | 'send' | 'wait_headers' | 'body' | 'store';
/** Who is at fault: the origin side, the client side, or Lacquer itself. */
export type Source = 'upstream' | 'downstream' | 'internal';

/** The class in plain words, for the error page. */
export const PLAIN: Record<ErrorType, string> = {
  dns_error: "The origin server's name could not be resolved.",
  dns_timeout: "Resolving the origin server's name timed out.",
  connection_refused: 'The origin server refused the connection: nothing is listening there right now.',
  connection_timeout: 'Connecting to the origin server timed out.',
  tls_certificate_error: "The origin server's TLS certificate was rejected.",
  tls_protocol_error: 'The TLS handshake with the origin server failed.',
  tls_alert_received: 'The origin server aborted the TLS handshake.',
  connection_limit_reached: 'The origin server is at its connection limit and the wait for a free slot ran out.',
  destination_unavailable: 'No healthy origin server is available.',
  connection_terminated: 'The origin server closed the connection before answering.',
  http_response_timeout: 'The origin server did not answer in time.',
  connection_read_timeout: 'The origin server stopped sending the response.',
  http_response_incomplete: "The origin server's response ended early.",
  http_protocol_error: 'The origin server sent something that is not valid HTTP.',
  http_response_header_section_size: "The origin server's response headers were too large.",
  connection_write_timeout: 'Sending the request to the origin server timed out.',
  http_request_error: 'Sending the request to the origin server failed.',
  proxy_internal_error: 'The proxy ran out of a resource it needs.',
  proxy_configuration_error: 'No route is configured for this request.',
};

/** The operator's one-line hint, from the last column of FAILURES.md. */
export const HINTS: Record<ErrorType, string> = {
  dns_error: 'Check the DNS record and the resolver; a typo or a stale record is the usual cause.',
  dns_timeout: 'The resolver failed or stalled; check it, cache lookups, or raise UV_THREADPOOL_SIZE.',
  connection_refused: 'The app is down, restarting, on another port or bound to another interface. Safe to retry elsewhere: nothing was sent.',
  connection_timeout: 'SYNs are dropped (firewall), the host is dead, or its accept backlog is full; check the network path. Safe to retry.',
  tls_certificate_error: 'Check the certificate subject and expiry and the SNI sent; renew or fix the chain.',
  tls_protocol_error: 'TLS spoken to a plain port, or no common protocol version; check the backend URL scheme and port.',
  tls_alert_received: 'The origin rejected the handshake (often SNI or client-certificate related); check its TLS logs.',
  connection_limit_reached: 'A slow backend holds every connection slot; raise max_connections only if the backend has headroom, and look at its latency.',
  destination_unavailable: "Every backend is sick or ejected: a real outage, or over-eager health checks. Look at each backend's probe history.",
  connection_terminated:
    "The origin closed the connection: crash, OOM, or its keep-alive timeout is shorter than the proxy's idle timeout (timeouts.idle). Keep the pool idle timeout below the origin's.",
  http_response_timeout: "A slow app or database. Give this route its own first_byte timeout, and compare the backend's recent TTFB to the limit; do not retry non-idempotent requests.",
  connection_read_timeout: 'The body stream stalled (overload or a GC pause). The partial object was not cached and the client connection was aborted.',
  http_response_incomplete: 'The backend crashed mid-body or sent a wrong Content-Length. The partial object was not cached and the client connection was aborted.',
  http_protocol_error: 'Wrong protocol on that port (TLS, h2c, not HTTP) or bad header bytes; check the backend URL and the first bytes received.',
  http_response_header_section_size: 'Huge Set-Cookie, CSP, cache-tag or JWT headers: shrink them or raise limits.response_header_size.',
  connection_write_timeout: 'The backend stopped reading the request; it may have answered early and closed.',
  http_request_error: 'Sending the request failed: the backend answered early (e.g. 413) and closed, or the client stopped sending its body.',
  proxy_internal_error: 'Raise LimitNOFILE, reuse connections, grow the cache or pass large objects.',
  proxy_configuration_error: 'Add a route or a default pool for this host and path.',
};

export type Timings = { dnsMs?: number; connectMs?: number; tlsMs?: number; ttfbMs?: number; totalMs?: number };

/** One try at one backend, as in nginx's $upstream_addr list. */
export type Attempt = {
  backend: string;
  /** 'ok' with the status, or the error type. */
  outcome: 'ok' | ErrorType;
  status?: number;
  ms: number;
  reused?: boolean;
  /** Why this attempt was a retry, if it was (e.g. 'stale-keepalive'). */
  retry?: string;
};

export type ProxyErrorInit = {
  type: ErrorType;
  phase: Phase;
  source?: Source;
  code?: string;
  message?: string;
  backend?: string;
  address?: string;
  reused?: boolean;
  limit?: { name: string; ms: number };
  /** A size limit that tripped, e.g. limits.response_header_size. */
  sizeLimit?: { name: string; bytes: number };
  elapsedMs?: number;
  bytesSent?: number;
  bytesReceived?: number;
  headersReceived?: boolean;
  cause?: unknown;
  /** Extra facts for the report, e.g. probe history or the first bytes received. */
  context?: Record<string, unknown>;
};

export class ProxyError extends Error {
  readonly type: ErrorType;
  readonly phase: Phase;
  readonly source: Source;
  readonly code: string;
  readonly backend: string | undefined;
  readonly address: string | undefined;
  readonly reused: boolean | undefined;
  readonly limit: { name: string; ms: number } | undefined;
  readonly sizeLimit: { name: string; bytes: number } | undefined;
  readonly elapsedMs: number | undefined;
  readonly bytesSent: number | undefined;
  readonly bytesReceived: number | undefined;
  /** True once response headers arrived: the failure happened mid-body. */
  readonly headersReceived: boolean;
  readonly context: Record<string, unknown> | undefined;

  constructor(init: ProxyErrorInit) {
    super(init.message ?? PLAIN[init.type], { cause: init.cause });
    this.name = 'ProxyError';
    this.type = init.type;
    this.phase = init.phase;
    this.source = init.source ?? 'upstream';
    this.code = init.code ?? init.type;
    this.backend = init.backend;
    this.address = init.address;
    this.reused = init.reused;
    this.limit = init.limit;
    this.sizeLimit = init.sizeLimit;
    this.elapsedMs = init.elapsedMs;
    this.bytesSent = init.bytesSent;
    this.bytesReceived = init.bytesReceived;
    this.headersReceived = init.headersReceived ?? false;
    this.context = init.context;
  }

  /** Nothing reached the origin: retrying on another backend is safe for any method. */
  get nothingSent(): boolean {
    return this.phase === 'dns' || this.phase === 'connect' || this.phase === 'tls' || this.phase === 'queue' || this.phase === 'choose';
  }

  /** RFC 9209 `details`, e.g. `first_byte_timeout=5s elapsed=5.003s`. */
  get details(): string {
    const parts: string[] = [];
    if (this.limit) parts.push(`${this.limit.name}=${seconds(this.limit.ms)}`);
    if (this.sizeLimit) parts.push(`${this.sizeLimit.name}=${formatSize(this.sizeLimit.bytes)}`);
    if (this.elapsedMs !== undefined) parts.push(`elapsed=${seconds(this.elapsedMs)}`);
    if (!this.limit && !this.sizeLimit && this.code !== this.type) parts.push(this.code);
    return parts.join(' ');
  }

  get hint(): string {
    return HINTS[this.type];
  }
}

function seconds(ms: number): string {
  return `${+(ms / 1000).toFixed(3)}s`;
}

export type FetchErrorContext = {
  backend: string;
  address?: string;
  timeouts: { connect: number; first_byte: number; between_bytes: number };
  elapsedMs: number;
  headersReceived: boolean;
  bytesReceived: number;
  /** Whether the request (head and body) had been handed to the socket completely. */
  requestSent: boolean;
  /** Whether the request went out on a socket that had carried an earlier request, when known (upstream/socket-reuse.ts). */
  reused?: boolean;
  /** The client's request body stream failed (too large, or the client went away mid-upload). */
  bodyFailed?: boolean;
  /** limits.response_header_size, named in the report when the origin's head is over it. */
  responseHeaderSize?: number;
};

type NodeishError = Error & { code?: string; errno?: number; syscall?: string; address?: string; port?: number; socket?: { bytesRead?: number; remoteAddress?: string; remotePort?: number } };

const TLS_CERT_CODES = new Set([
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_REVOKED',
  'CERT_UNTRUSTED',
]);

/** Maps an error from undici / the socket to its RFC 9209 class. The single place that reads raw codes. */
export function classifyFetchError(raw: unknown, ctx: FetchErrorContext): ProxyError {
  if (raw instanceof ProxyError) return raw;
  const err = (raw instanceof Error ? raw : new Error(String(raw))) as NodeishError;
  // undici's HTTPParserError leaves `code` unset for some llhttp errors; its name still says what it is.
  const code = err.code ?? (err.name === 'AbortError' ? 'ABORT_ERR' : err.name === 'HTTPParserError' ? 'HTTPParserError' : 'UNKNOWN');
  const base = {
    code,
    backend: ctx.backend,
    address: err.address ? `${err.address}${err.port ? `:${err.port}` : ''}` : ctx.address,
    elapsedMs: ctx.elapsedMs,
    bytesReceived: ctx.bytesReceived,
    headersReceived: ctx.headersReceived,
    cause: err,
  };
  // A socket that already read bytes before this request was a reused keep-alive connection.
  const reused =
    ctx.reused !== undefined ? ctx.reused && !ctx.headersReceived : err.socket?.bytesRead !== undefined ? err.socket.bytesRead > 0 && !ctx.headersReceived : undefined;
  const after = ctx.headersReceived;
  // FAILURES.md http_request_error: a request body that could not be read is the client's failure
  // (Varnish "req.body read error"), never retried and never counted against the backend.
  if (ctx.bodyFailed && !after) return new ProxyError({ ...base, type: 'http_request_error', phase: 'send', source: 'downstream' });
  switch (code) {
    case 'ENOTFOUND':
      return new ProxyError({ ...base, type: 'dns_error', phase: 'dns' });
    case 'EAI_AGAIN':
      return new ProxyError({ ...base, type: 'dns_timeout', phase: 'dns' });
    case 'ECONNREFUSED':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return new ProxyError({ ...base, type: 'connection_refused', phase: 'connect' });
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'ETIMEDOUT':
      return new ProxyError({ ...base, type: 'connection_timeout', phase: 'connect', limit: { name: 'connect_timeout', ms: ctx.timeouts.connect } });
    case 'UND_ERR_HEADERS_TIMEOUT':
      return new ProxyError({ ...base, type: 'http_response_timeout', phase: 'wait_headers', limit: { name: 'first_byte_timeout', ms: ctx.timeouts.first_byte } });
    case 'UND_ERR_BODY_TIMEOUT':
      return new ProxyError({ ...base, type: 'connection_read_timeout', phase: 'body', limit: { name: 'between_bytes_timeout', ms: ctx.timeouts.between_bytes } });
    case 'UND_ERR_HEADERS_OVERFLOW':
    case 'HPE_HEADER_OVERFLOW':
      return new ProxyError({
        ...base,
        type: 'http_response_header_section_size',
        phase: 'wait_headers',
        sizeLimit: ctx.responseHeaderSize === undefined ? undefined : { name: 'response_header_size', bytes: ctx.responseHeaderSize },
      });
    case 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH':
      return new ProxyError({ ...base, type: 'http_response_incomplete', phase: 'body' });
    case 'EMFILE':
    case 'ENFILE':
    case 'EADDRNOTAVAIL':
    case 'ENOBUFS':
      return new ProxyError({ ...base, type: 'proxy_internal_error', phase: 'connect', source: 'internal' });
    case 'UND_ERR_SOCKET':
    case 'ECONNRESET':
    case 'EPIPE':
    case 'UND_ERR_CLOSED':
      if (after) return new ProxyError({ ...base, type: 'http_response_incomplete', phase: 'body' });
      if (!ctx.requestSent) return new ProxyError({ ...base, type: 'http_request_error', phase: 'send', reused });
      return new ProxyError({ ...base, type: 'connection_terminated', phase: 'wait_headers', reused });
  }
  if (code.startsWith('HPE_') || err.name === 'HTTPParserError') {
    return new ProxyError({ ...base, type: after ? 'http_response_incomplete' : 'http_protocol_error', phase: after ? 'body' : 'wait_headers', context: protocolContext(err) });
  }
  if (TLS_CERT_CODES.has(code)) return new ProxyError({ ...base, type: 'tls_certificate_error', phase: 'tls' });
  if (code.startsWith('ERR_SSL_TLSV1_ALERT') || code.startsWith('ERR_SSL_SSLV3_ALERT')) return new ProxyError({ ...base, type: 'tls_alert_received', phase: 'tls' });
  if (code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_')) return new ProxyError({ ...base, type: 'tls_protocol_error', phase: 'tls' });
  if (after) return new ProxyError({ ...base, type: 'http_response_incomplete', phase: 'body' });
  return new ProxyError({ ...base, type: 'proxy_internal_error', phase: 'send', source: 'internal' });
}

function protocolContext(err: NodeishError): Record<string, unknown> | undefined {
  const data = (err as { data?: unknown }).data;
  return typeof data === 'string' && data ? { first_bytes: JSON.stringify(data.slice(0, 64)) } : undefined;
}

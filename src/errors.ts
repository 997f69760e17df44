// The one error type of the proxy (habit 2 of STYLE.md): every failed or degraded fetch becomes a ProxyError
// carrying its RFC 9209 class (docs/FAILURES.md), phase, source, raw code, backend and timings.
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

/**
 * Whether a retry of a failed attempt may go elsewhere: `any-method` (nothing reached an origin),
 * `idempotent` (RFC 9110 §9.2.2 methods with a replayable body, before any response byte went out),
 * `if-configured` (idempotent, and only when the policy asks: `retries.on_timeout`), `never`.
 */
export type Retryable = 'any-method' | 'idempotent' | 'if-configured' | 'never';

/** Everything Lacquer knows about one failure class, in one row (FAILURES.md, one line per class). */
export type ErrorClass = {
  /** The class in plain words, for the error page. */
  plain: string;
  /** The operator's one-line hint, from the last column of FAILURES.md. */
  hint: string;
  /** The failure says something about the backend (passive health counts it); our own caps and the client's faults do not. */
  backendFault: boolean;
  /** Whether any byte of the request can have reached an origin: `nothing` makes a retry free of origin load. */
  sent: 'nothing' | 'maybe';
  retryable: Retryable;
};

/**
 * The one table of failure classes. Retry decisions, passive health, error pages, log hints and the
 * retry budget read it; nothing else lists classes (the lists in errors.ts and health/outlier.ts it
 * replaces drifted apart).
 */
export const ERROR_CLASSES: { readonly [T in ErrorType]: Readonly<ErrorClass> } = {
  dns_error: {
    plain: "The origin server's name could not be resolved.",
    hint: 'Check the DNS record and the resolver; a typo or a stale record is the usual cause.',
    backendFault: true,
    sent: 'nothing',
    retryable: 'any-method',
  },
  dns_timeout: {
    plain: "Resolving the origin server's name timed out.",
    hint: 'The resolver failed or stalled; check it, cache lookups, or raise UV_THREADPOOL_SIZE.',
    backendFault: true,
    sent: 'nothing',
    retryable: 'any-method',
  },
  connection_refused: {
    plain: 'The origin server refused the connection: nothing is listening there right now.',
    hint: 'The app is down, restarting, on another port or bound to another interface. Safe to retry elsewhere: nothing was sent.',
    backendFault: true,
    sent: 'nothing',
    retryable: 'any-method',
  },
  connection_timeout: {
    plain: 'Connecting to the origin server timed out.',
    hint: 'SYNs are dropped (firewall), the host is dead, or its accept backlog is full; check the network path. Safe to retry.',
    backendFault: true,
    sent: 'nothing',
    retryable: 'any-method',
  },
  tls_certificate_error: {
    plain: "The origin server's TLS certificate was rejected.",
    hint: 'Check the certificate subject and expiry and the SNI sent; renew or fix the chain.',
    backendFault: true,
    sent: 'nothing',
    retryable: 'any-method',
  },
  tls_protocol_error: {
    plain: 'The TLS handshake with the origin server failed.',
    hint: 'TLS spoken to a plain port, or no common protocol version; check the backend URL scheme and port.',
    backendFault: true,
    sent: 'nothing',
    retryable: 'any-method',
  },
  tls_alert_received: {
    plain: 'The origin server aborted the TLS handshake.',
    hint: 'The origin rejected the handshake (often SNI or client-certificate related); check its TLS logs.',
    backendFault: true,
    sent: 'nothing',
    retryable: 'any-method',
  },
  connection_limit_reached: {
    plain: 'The origin server is at its concurrency limit and the wait for a free slot ran out.',
    hint: "Every slot of the backend (its learned concurrency limit, or max_connections) is busy and the queue is full or its wait (overload.queue_timeout) ran out: a slow or overloaded backend. Look at its latency and its learned limit in /api/backends; add capacity rather than raising the cap.",
    backendFault: false, // our own cap: the backend did nothing wrong
    sent: 'nothing',
    retryable: 'any-method',
  },
  destination_unavailable: {
    plain: 'No healthy origin server is available.',
    hint: "Every backend is sick or ejected: a real outage, or over-eager health checks. Look at each backend's probe history.",
    backendFault: false,
    sent: 'nothing',
    retryable: 'never',
  },
  connection_terminated: {
    plain: 'The origin server closed the connection before answering.',
    hint: "The origin closed the connection: crash, OOM, or its keep-alive timeout is shorter than the proxy's idle timeout (timeouts.idle). Keep the pool idle timeout below the origin's.",
    backendFault: true, // except the keep-alive race (a reused socket): see health/outlier.ts verdictOf
    sent: 'maybe',
    retryable: 'idempotent',
  },
  http_response_timeout: {
    plain: 'The origin server did not answer in time.',
    hint: "A slow app or database. Give this route its own first_byte timeout, and compare the backend's recent TTFB to the limit; do not retry non-idempotent requests.",
    backendFault: true,
    sent: 'maybe',
    retryable: 'if-configured',
  },
  connection_read_timeout: {
    plain: 'The origin server stopped sending the response.',
    hint: 'The body stream stalled (overload or a GC pause). The partial object was not cached and the client connection was aborted.',
    backendFault: true,
    sent: 'maybe',
    retryable: 'never',
  },
  http_response_incomplete: {
    plain: "The origin server's response ended early.",
    hint: 'The backend crashed mid-body or sent a wrong Content-Length. The partial object was not cached and the client connection was aborted (or, when nothing had been sent yet, the client got this explained error).',
    backendFault: true,
    sent: 'maybe',
    retryable: 'never',
  },
  http_protocol_error: {
    plain: 'The origin server sent something that is not valid HTTP.',
    hint: 'Wrong protocol on that port (TLS, h2c, not HTTP) or bad header bytes; check the backend URL and the first bytes received.',
    backendFault: true,
    sent: 'maybe',
    retryable: 'never',
  },
  http_response_header_section_size: {
    plain: "The origin server's response headers were too large.",
    hint: 'Huge Set-Cookie, CSP, cache-tag or JWT headers: shrink them or raise limits.response_header_size.',
    backendFault: true,
    sent: 'maybe',
    retryable: 'never',
  },
  connection_write_timeout: {
    plain: 'Sending the request to the origin server timed out.',
    hint: 'The backend stopped reading the request; it may have answered early and closed.',
    backendFault: false,
    sent: 'maybe',
    retryable: 'never',
  },
  http_request_error: {
    plain: 'Sending the request to the origin server failed.',
    hint: 'Sending the request failed: the backend answered early (e.g. 413) and closed, or the client stopped sending its body.',
    backendFault: false,
    sent: 'maybe',
    retryable: 'never',
  },
  proxy_internal_error: {
    plain: 'The proxy ran out of a resource it needs.',
    hint: 'Raise LimitNOFILE, reuse connections, grow the cache or pass large objects.',
    backendFault: false,
    sent: 'maybe', // EMFILE at connect sends nothing; the phase says so (ProxyError.nothingSent)
    retryable: 'never',
  },
  proxy_configuration_error: {
    plain: 'No route is configured for this request.',
    hint: 'Add a route or a default pool for this host and path.',
    backendFault: false,
    sent: 'nothing',
    retryable: 'never',
  },
};

/** The class in plain words, for the error page (a view of ERROR_CLASSES). */
export const PLAIN: Readonly<Record<ErrorType, string>> = Object.fromEntries(ERROR_TYPES.map((t) => [t, ERROR_CLASSES[t].plain])) as Record<ErrorType, string>;

/** The operator's one-line hint (a view of ERROR_CLASSES). */
export const HINTS: Readonly<Record<ErrorType, string>> = Object.fromEntries(ERROR_TYPES.map((t) => [t, ERROR_CLASSES[t].hint])) as Record<ErrorType, string>;

/**
 * Nothing of the request can have reached an origin for this class: a retry adds no origin load, so
 * retry budgeting (issue 9 item 2) need not charge it. Class-level; `ProxyError.nothingSent` also knows
 * the phase of one failure.
 */
export function sentNothing(type: ErrorType): boolean {
  return ERROR_CLASSES[type].sent === 'nothing';
}

/** The failure says something about the backend's health (passive health counts it). */
export function isBackendFault(type: ErrorType): boolean {
  return ERROR_CLASSES[type].backendFault;
}

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
    return sentNothing(this.type) || this.phase === 'dns' || this.phase === 'connect' || this.phase === 'tls' || this.phase === 'queue' || this.phase === 'choose';
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
    return ERROR_CLASSES[this.type].hint;
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

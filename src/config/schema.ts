// The one configuration schema. Every setting is declared here once, with its default, unit and a sentence
// for the operator (rendered into README's configuration reference by `npm run docs:config`).
// Values are validated once at load into a frozen object: durations in milliseconds, sizes in bytes.
import { z } from 'zod';
import { DURATION_HINT, SIZE_HINT, formatDuration, parseDuration, parseSize } from './units.ts';
import { parseCondition, SIGNALS, type Condition } from '../observe/alert-conditions.ts';
import { certificateProblems } from '../server/tls.ts';

/** A string (or number) turned into a number by `parse`; `hint` says what is valid when it cannot. */
function parsedUnit(parse: (v: unknown) => number | undefined, hint: string) {
  return z.union([z.string(), z.number()]).transform((v, ctx) => {
    const n = parse(v);
    if (n === undefined) {
      ctx.addIssue({ code: 'custom', message: hint });
      return z.NEVER;
    }
    return n;
  });
}

/** A duration setting: `250ms`, `3.5s`, `10m`, `1d`; stored as milliseconds. */
function duration(def: string, doc: string) {
  return parsedUnit(parseDuration, DURATION_HINT).prefault(def).meta({ description: doc, default: def, unit: 'duration' });
}

/** A size setting: `64KiB`, `256MiB`; stored as bytes. */
function size(def: string, doc: string) {
  return parsedUnit(parseSize, SIZE_HINT).prefault(def).meta({ description: doc, default: def, unit: 'size' });
}

function optionalDuration(doc: string) {
  return parsedUnit(parseDuration, DURATION_HINT).optional().meta({ description: doc, unit: 'duration' });
}

const HOST_PORT = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;
const listenAddress = (def: string, doc: string) =>
  z
    .string()
    .refine((s) => HOST_PORT.test(s) && Number(HOST_PORT.exec(s)![2]) <= 65535, {
      message: 'host:port, e.g. 127.0.0.1:6081 or [::1]:6081',
    })
    .default(def)
    .meta({ description: doc, default: def });

// ── The client-facing edge: listeners (TLS, HTTP/2, PROXY protocol) and compression (issue 14) ───────

const Certificate = z
  .strictObject({
    cert: z.string().min(1).meta({ description: 'PEM file with the certificate, followed by its intermediates (the chain sent to clients).' }),
    key: z.string().min(1).meta({ description: 'PEM file with the private key of `cert`.' }),
  });

const ListenerTls = z
  .union([
    z.strictObject({
      certificates: z
        .array(Certificate)
        .min(1, 'at least one { cert, key }')
        .meta({ description: 'Certificates, chosen by SNI (the first whose names cover the requested host); the first is the default for clients that send no or an unknown name.' }),
      min_version: z
        .enum(['TLSv1.2', 'TLSv1.3'])
        .default('TLSv1.2')
        .meta({ description: 'Oldest TLS version accepted. Ciphers are Mozilla’s “intermediate” list.', default: 'TLSv1.2' }),
    }),
    // The one-certificate short form, `tls: { cert, key }`.
    Certificate.transform((c) => ({ certificates: [c], min_version: 'TLSv1.2' as const, short: true })),
  ])
  .superRefine((t, ctx) => {
    // Checked at load (start, `lacquer check`, reload), so a reload with a bad file is refused with the
    // running certificates kept, and a start fails with the file named rather than at the first handshake.
    t.certificates.forEach((c, i) => {
      const at = 'short' in t ? [] : ['certificates', i];
      for (const p of certificateProblems(c)) ctx.addIssue({ code: 'custom', path: [...at, p.field], message: p.message });
    });
  });

const ListenerObject = z.strictObject({
  address: z
    .string()
    .refine((s) => HOST_PORT.test(s) && Number(HOST_PORT.exec(s)![2]) <= 65535, { message: 'host:port, e.g. 0.0.0.0:443 or [::]:443' })
    .meta({ description: 'host:port to listen on.' }),
  tls: ListenerTls.optional().meta({ description: 'Terminate TLS here: `{ certificates: [{cert, key}, ...], min_version }` or the short form `{ cert, key }`. Certificates are re-read on reload without dropping connections.' }),
  http2: z
    .boolean()
    .optional()
    .meta({ description: 'Speak HTTP/2: on TLS listeners through ALPN (`h2`, with `http/1.1` for older clients); on plain listeners as h2c with prior knowledge next to HTTP/1.1. Default: true with `tls`, false without.' }),
  proxy_protocol: z
    .boolean()
    .default(false)
    .meta({ description: 'Expect a PROXY protocol v1 or v2 header (from a load balancer) on every connection: its client address is used in logs and `X-Forwarded-For`. Connections without one are closed.', default: false }),
});

/** One client listener, normalised: `listen` entries become these. */
export type ListenerConfig = {
  address: string;
  tls: { certificates: { cert: string; key: string }[]; min_version: 'TLSv1.2' | 'TLSv1.3' } | undefined;
  http2: boolean;
  proxy_protocol: boolean;
};

const LISTEN_DEFAULT = '127.0.0.1:6081';
const ListenEntry = z.union([
  z.string().refine((s) => HOST_PORT.test(s) && Number(HOST_PORT.exec(s)![2]) <= 65535, { message: 'host:port, e.g. 127.0.0.1:6081 or [::1]:6081' }),
  ListenerObject,
]);
const Listen = z
  .union([ListenEntry, z.array(ListenEntry).min(1, 'at least one listener')])
  .default(LISTEN_DEFAULT)
  .meta({
    description:
      'Client listeners (default `127.0.0.1:6081`): one `host:port` string (plain HTTP/1.1), or a list of strings and objects `{ address, tls, http2, proxy_protocol }`.',
    default: LISTEN_DEFAULT,
  })
  .transform((v): ListenerConfig[] =>
    (Array.isArray(v) ? v : [v]).map((e) =>
      typeof e === 'string'
        ? { address: e, tls: undefined, http2: false, proxy_protocol: false }
        : { address: e.address, tls: e.tls, http2: e.http2 ?? e.tls !== undefined, proxy_protocol: e.proxy_protocol },
    ),
  );

const CODINGS = ['br', 'gzip'] as const;
const MEDIA_RANGE = /^[a-z0-9!#$&^_.+-]+\/([a-z0-9!#$&^_.+-]+|\*)$/;

const Compression = z.strictObject({
  enabled: z.boolean().default(true).meta({ description: 'Compress responses for clients that accept it (RFC 9110 §12.5.3). On by default, like Varnish’s `http_gzip_support` and Debian’s nginx.', default: true }),
  encodings: z
    .array(z.enum(CODINGS))
    .default(['br', 'gzip'])
    .meta({ description: 'Content codings offered, in order of preference when a client accepts several equally. (zstd is left out while Node marks it experimental.)', default: ['br', 'gzip'] }),
  types: z
    .array(z.string().regex(MEDIA_RANGE, 'a media type like `application/json` or a range like `text/*`'))
    .default(['text/*', 'application/json', 'application/javascript', 'image/svg+xml', 'application/xml'])
    .meta({ description: 'Media types that are compressed; others (images, archives, video) are already compressed and sent as they are.', default: ['text/*', 'application/json', 'application/javascript', 'image/svg+xml', 'application/xml'] }),
  min_size: size('1KiB', 'Bodies smaller than this are sent uncompressed: the coding would cost more than it saves.'),
});

const Timeouts = z.strictObject({
  connect: optionalDuration('TCP (and TLS) connect timeout; past it the fetch fails `connection_timeout`. Default 3.5s.'),
  first_byte: optionalDuration(
    'Time from sending the request to receiving the complete response headers; past it `http_response_timeout`. Default 60s.',
  ),
  between_bytes: optionalDuration(
    'Longest pause between two chunks of the response body; past it `connection_read_timeout` and the client connection is aborted. Default 60s.',
  ),
  idle: optionalDuration(
    "How long an idle keep-alive connection to the origin is kept. Kept below the origin's own keep-alive timeout: an origin `Keep-Alive: timeout=N` hint lowers it. Default 4s.",
  ),
});

export const TIMEOUT_DEFAULTS = { connect: 3500, first_byte: 60_000, between_bytes: 60_000, idle: 4000 } as const;

const Backend = z.strictObject({
  name: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,64}$/, 'a name of 1-64 letters, digits, `_`, `.` or `-`')
    .meta({ description: 'Name used in logs, `Proxy-Status` next-hop and metrics.' }),
  url: z
    .string()
    .refine((s) => {
      try {
        const u = new URL(s);
        return (u.protocol === 'http:' || u.protocol === 'https:') && (u.pathname === '/' || u.pathname === '') && !u.search;
      } catch {
        return false;
      }
    }, 'an origin URL like http://127.0.0.1:9001 or https://app.internal (scheme, host and port only)')
    .meta({ description: 'Origin base URL: scheme, host and optional port.' }),
  host_header: z
    .string()
    .optional()
    .meta({ description: 'Host header sent to this backend. Default: the client request Host is passed through.' }),
  timeouts: Timeouts.optional().meta({ description: 'Per-backend overrides of the top-level `timeouts`.' }),
  max_connections: z
    .number()
    .int()
    .positive()
    .optional()
    .meta({ description: 'Most concurrent requests (= connections) to this backend from the whole instance (split between `workers`, README "Workers"): a hard cap above the learned limit (`overload.adaptive`). Default: none but the learned limit.' }),
  weight: z.number().positive().default(1).meta({ description: 'Relative share of traffic.', default: 1 }),
  zone: z.string().optional().meta({ description: 'Optional zone label, for zone-aware pools.' }),
});

/** `cache.stale_if_error` when neither it nor the deprecated `grace` is set. */
const STALE_IF_ERROR_DEFAULT = '1d';

const Cache = z.strictObject({
  memory: size('256MiB', 'Upper bound on stored bytes (headers + bodies); least recently used objects are evicted beyond it.'),
  // Optional (not defaulted) so the deprecated `grace` can stand in for it; parsed and defaulted in the
  // transform below (a refine, not a transform here, keeps its documented default in the reference).
  stale_if_error: z
    .union([z.string(), z.number()])
    .refine((v) => parseDuration(v) !== undefined, DURATION_HINT)
    .meta({
      description:
        'How long past expiry a stored object may stand in when the fetch fails (any failure class, a full backend queue) or the origin answers 500, 502, 503 or 504 — "disconnected" in RFC 9111 §4.2.4 terms (RFC 5861 §4). Never for `must-revalidate`, `proxy-revalidate`, `no-cache`, or `s-maxage` without an explicit RFC 5861 directive. A response `stale-if-error=N` overrides it for that object.',
      default: STALE_IF_ERROR_DEFAULT,
      unit: 'duration',
    })
    .optional(),
  stale_while_revalidate: duration(
    '0',
    'How long past expiry an object may be served at once while one background fetch revalidates it, for responses without their own `stale-while-revalidate`. 0 (RFC 9111 §4.2.4): an expired object is revalidated before it is served (concurrent requests still wait on that one revalidation). Above 0 is a deliberate deviation from §4.2.4 an operator opts into (Varnish grace).',
  ),
  grace: optionalDuration(
    'Deprecated alias of `stale_if_error` (used when that is not set). It used to mean stale-while-revalidate too; `lacquer check` explains the change.',
  ),
  keep: duration('1d', 'How long past the stale windows an object is kept only for conditional revalidation (If-None-Match / If-Modified-Since).'),
  default_ttl: duration(
    '0',
    "Freshness given to responses that carry no freshness information (Varnish's default_ttl). 0 = never serve such responses from cache: caching dynamic pages that said nothing is how private data leaks.",
  ),
  max_object_share: z
    .number()
    .gt(0)
    .max(1)
    .default(0.1)
    .meta({ description: 'Objects larger than this share of `memory` are passed, not stored.', default: 0.1 }),
  heuristic_fraction: z
    .number()
    .min(0)
    .max(1)
    .default(0.1)
    .meta({
      description: 'Heuristic freshness (RFC 9111 §4.2.2) as a share of the `Last-Modified` age, for heuristically cacheable statuses only. 0 disables it.',
      default: 0.1,
    }),
  heuristic_max: duration('1d', 'Cap on heuristic freshness.'),
  store_set_cookie: z
    .boolean()
    .default(false)
    .meta({ description: "Store responses that carry `Set-Cookie`. Off so one visitor's cookie is never served to another.", default: false }),
  honor_client_cache_control: z
    .boolean()
    .default(false)
    .meta({
      description:
        'Honour request `Cache-Control` from clients (RFC 9111 §5.2.1): `no-cache`, `max-age`, `min-fresh` revalidate; `max-stale` accepts a stale copy; `only-if-cached` answers 504 when nothing usable is stored; `no-store` keeps the response out of the cache. Off so a client cannot force origin traffic (request directives are advisory, §5.2.1).',
      default: false,
    }),
  cookie_requests: z
    .enum(['pass', 'ignore'])
    .default('pass')
    .meta({
      description:
        "Responses to requests that carry `Cookie`. `pass` (Varnish's built-in rule): not stored unless the response is explicitly `public`, has `s-maxage`, or has `Vary: Cookie` — a page built for one visitor's cookie is never served to another. `ignore`: stored per RFC 9111 like any other (the origin must say `private` or `Vary: Cookie` itself).",
      default: 'pass',
    }),
  tag_headers: z
    .array(z.string().regex(/^[a-z0-9-]+$/, 'a lowercase header name'))
    .default(['surrogate-key', 'cache-tag'])
    .meta({ description: 'Response headers whose values tag an object for purge by tag (space- or comma-separated).', default: ['surrogate-key', 'cache-tag'] }),
  persist: z
    .strictObject({
      path: z.string().min(1).meta({ description: 'Snapshot file. Written to a temp file and renamed over it; checksummed.' }),
      interval: duration('5m', 'How often the snapshot is written while running (it is also written on graceful shutdown). 0 = only on shutdown.'),
    })
    .optional()
    .meta({ description: 'Warm restart: write the cache to disk and load what is still within `keep` on start, so a restart sends no stampede of misses to the origin. Off by default.' }),
  coalesce_wait: duration(
    '65s',
    'How long a request waits for an identical in-flight origin fetch before giving up (`http_response_timeout`). Should exceed `first_byte`.',
  ),
}).transform((c) => ({ ...c, stale_if_error: c.stale_if_error !== undefined ? parseDuration(c.stale_if_error)! : (c.grace ?? parseDuration(STALE_IF_ERROR_DEFAULT)!) }));

const Fleet = z.strictObject({
  redis: z
    .string()
    .regex(/^(rediss?:\/\/.+|redis\+sentinel:\/\/([^:@/]*:[^@/]*@)?[^/]+\/[^/]+(\/\d+)?)$/, 'a Redis URL: redis://[user:password@]host:port[/db], rediss:// for TLS, or redis+sentinel://[user:password@]host:port[,host:port…]/master-name[/db]')
    .meta({
      description:
        'The Redis the instances share (Redis 7+ or Valkey; Redis Cluster is not supported). `rediss://` uses TLS; a password goes in the URL, e.g. `redis://:${REDIS_PASSWORD}@redis:6379/0`. `redis+sentinel://s1:26379,s2:26379/mymaster` asks Sentinel for the master and follows failovers (a password in that URL is the data nodes\' one).',
    }),
  name: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,64}$/, '1 to 64 letters, digits, `_`, `.` or `-`')
    .default('lacquer')
    .meta({ description: 'Namespace of this fleet in Redis: the prefix of its keys and channels. Fleets with different names share nothing.', default: 'lacquer' }),
  store: z
    .strictObject({
      max_object_size: size('1MiB', 'Objects larger than this are cached locally only, never written to Redis.'),
      timeout: duration('50ms', 'Longest a request waits on Redis for one operation (lookup, lock); past it the request goes on without the fleet and `lacquer_fleet_errors_total{op}` counts a timeout.'),
    })
    .prefault({})
    .meta({ description: 'The shared object store (L2): what goes into Redis, and how long a request may wait for it.' }),
});

const Limits = z.strictObject({
  request_header_size: size('16KiB', 'Largest request head accepted from a client; beyond it 431.'),
  request_body_size: size('10MiB', 'Largest request body accepted from a client; beyond it 413.'),
  response_header_size: size('64KiB', 'Largest response head accepted from an origin; beyond it `http_response_header_section_size`.'),
});

const Errors = z.strictObject({
  retry_after: duration('5s', '`Retry-After` sent with every synthetic 503 (rounded up to whole seconds).'),
  expose_details: z
    .boolean()
    .default(false)
    .meta({
      description: 'Put backend addresses, raw error codes and the operator hint in error pages. They are always in the log.',
      default: false,
    }),
});

const Log = z.strictObject({
  access: z
    .string()
    .default('stdout')
    .meta({
      description:
        'Where access log lines (one JSON object per request) go: `stdout`, `stderr`, `off` or a file path (appended to; its directory must exist). Operational messages always go to stderr, and to the file too. A file is written in batches (32 KiB or 10 ms) from the event loop until one write takes over 20 ms, then through a thread pool. A destination that does not keep up never stalls the proxy beyond that one write: past 4 MiB pending, lines are dropped and counted (`lacquer_log_lines_dropped_total`). Restart to change.',
      default: 'stdout',
    }),
  level: z
    .enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'])
    .default('info')
    .meta({ description: 'Level of operational messages (start, stop, failures are `warn`).', default: 'info' }),
});

const Proxy = z.strictObject({
  trust_forwarded: z
    .boolean()
    .default(false)
    .meta({ description: 'Trust and extend client `X-Forwarded-For`/`-Proto`; off = they are replaced.', default: false }),
  name: z
    .string()
    .regex(/^[A-Za-z0-9_.-]+$/)
    .default('lacquer')
    .meta({ description: 'This proxy’s name in `Via`, `Proxy-Status` and `Cache-Status`.', default: 'lacquer' }),
  drain_timeout: duration('10s', 'On SIGTERM/SIGINT: how long in-flight requests may take to finish before the process exits.'),
});

/** Loopback listen hosts: the admin plane may stay open (read-only) without a token only there. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

const Admin = z
  .strictObject({
    enabled: z.boolean().default(true).meta({ description: 'Run the admin listener (API, `/metrics`, dashboard).', default: true }),
    listen: listenAddress('127.0.0.1:6082', 'Address of the admin listener; never the public port. A non-loopback address requires `token`.'),
    token: z
      .string()
      .min(16, 'a token of at least 16 characters')
      .optional()
      .meta({
        description:
          'Bearer token for the admin plane (use `${ENV_VAR}`). When set, or when `listen` is not loopback, every API call needs `Authorization: Bearer <token>`; write calls (health overrides) always need it. Default: none.',
      }),
  })
  .superRefine((a, ctx) => {
    const host = a.listen.slice(0, a.listen.lastIndexOf(':'));
    if (a.enabled && !a.token && !isLoopbackHost(host)) {
      ctx.addIssue({ code: 'custom', path: ['token'], message: `a token (admin.listen ${a.listen} is not loopback: refusing to expose the admin plane without one)` });
    }
  });

const Webhook = z.strictObject({
  url: z
    .string()
    .refine((s) => URL.canParse(s) && /^https?:$/.test(new URL(s).protocol), 'an http(s) URL')
    .meta({ description: 'Where alert notifications are POSTed.' }),
  format: z
    .enum(['json', 'slack'])
    .default('json')
    .meta({ description: '`json`: rule, state, value, threshold, since, summary, top failure classes; `slack`: Slack-compatible `{text}`.', default: 'json' }),
  headers: z.record(z.string(), z.string()).optional().meta({ description: 'Extra request headers, e.g. an authorization for the receiver.' }),
});

const AlertRule = z.strictObject({
  name: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,64}$/, 'a name of 1-64 letters, digits, `_`, `.` or `-`')
    .meta({ description: 'Rule name, in notifications, `/api/alerts` and the `lacquer_alert_firing` metric.' }),
  when: z
    .string()
    .transform((s, ctx): Condition => {
      const c = parseCondition(s);
      if ('problem' in c) {
        ctx.addIssue({ code: 'custom', message: c.problem });
        return z.NEVER;
      }
      return c;
    })
    .meta({ description: `Condition: a signal and a threshold (\`error_rate > 1%\`, \`backend_ttfb_p99 > 2s\`) or a yes/no signal (\`backend_unhealthy\`). Signals: ${Object.keys(SIGNALS).join(', ')}.` }),
  for: duration('0s', 'How long the condition must hold before the alert fires.'),
  clear_for: optionalDuration('How long the condition must stay false before the alert resolves (hysteresis). Default: the rule’s `for`, at least two evaluation intervals.'),
  window: optionalDuration('Window over which rates, ratios and percentiles are computed for this rule. Default: `alerts.window`.'),
});

const Alerts = z.strictObject({
  interval: duration('5s', 'How often the rules are evaluated, in-process.'),
  window: duration('1m', 'Default window for rates, ratios and percentiles (at most 15m, the history kept).'),
  min_interval: duration('1m', 'Least time between a rule resolving and firing again, so a flapping condition does not spam the receivers.'),
  webhooks: z.array(Webhook).default([]).meta({ description: 'Receivers of every notification (firing and resolved).', default: [] }),
  rules: z.array(AlertRule).default([]).meta({ description: 'Alert rules, evaluated every `interval`.', default: [] }),
  delivery_timeout: duration('5s', 'Timeout of one webhook delivery attempt.'),
  delivery_retries: z
    .number()
    .int()
    .min(0)
    .max(20)
    .default(5)
    .meta({ description: 'Retries of a failed delivery, with exponential backoff; then it is logged as failed and dropped.', default: 5 }),
  delivery_backoff: duration('1s', 'Wait before the first retry of a failed delivery; doubled on every further retry (capped at 5m).'),
}).superRefine((a, ctx) => {
  // The timeline keeps 15 minutes: a longer window would silently measure less than it says.
  const HISTORY_MS = 15 * 60_000;
  if (a.window > HISTORY_MS) ctx.addIssue({ code: 'custom', path: ['window'], message: 'at most 15m (the history kept)' });
  const seen = new Set<string>();
  a.rules.forEach((r, i) => {
    if ((r.window ?? 0) > HISTORY_MS) ctx.addIssue({ code: 'custom', path: ['rules', i, 'window'], message: 'at most 15m (the history kept)' });
    if (seen.has(r.name)) ctx.addIssue({ code: 'custom', path: ['rules', i, 'name'], message: 'a name not used by another rule' });
    seen.add(r.name);
  });
});

// ── Pools, routes, health, retries, overload (the pools issue) ─────────────────────────────────────
// The sections `probes`, `health`, `retries` and `overload` are defaults for every pool; a pool's own
// `probe`, `health`, `retries` or `overload` replaces the whole section for that pool (keys it omits take
// their built-in defaults, not the top-level values), so each setting is still declared once, here.

const NAME = /^[A-Za-z0-9_.-]{1,64}$/;
const NAME_HINT = 'a name of 1-64 letters, digits, `_`, `.` or `-`';

const Probe = z.strictObject({
  enabled: z
    .boolean()
    .default(false)
    .meta({ description: 'Send active health probes to every backend of the pool. Off: backends count as healthy unless passive health ejects them.', default: false }),
  path: z
    .string()
    .startsWith('/', 'a path starting with /')
    .default('/')
    .meta({ description: 'Path probed with `GET` (sent with `Connection: close` and the backend’s `host_header`).', default: '/' }),
  request: z
    .array(z.string())
    .optional()
    .meta({ description: 'A raw HTTP/1.1 request instead of `path`, one line per item (Varnish `.request`), e.g. `["GET /ping HTTP/1.1", "Host: app", "Connection: close"]`.' }),
  interval: duration('5s', 'Time between two probes of one backend. Probes never pile up: the next one starts only after the previous finished.'),
  timeout: duration('2s', 'A probe that has no status line within this time fails.'),
  window: z
    .number()
    .int()
    .min(1)
    .max(64)
    .default(8)
    .meta({ description: 'How many of the most recent probes are remembered.', default: 8 }),
  threshold: z
    .number()
    .int()
    .min(1)
    .max(64)
    .default(3)
    .meta({ description: 'A backend is healthy when at least this many of the last `window` probes passed.', default: 3 }),
  initial: z
    .number()
    .int()
    .min(0)
    .max(64)
    .optional()
    .meta({
      description:
        'How many probes count as passed at start. Default: `threshold` (backends start healthy). Varnish uses `threshold - 1`: start sick until the first probe passes.',
    }),
  expected_status: z
    .number()
    .int()
    .min(100)
    .max(599)
    .default(200)
    .meta({ description: 'The status a passing probe answers with.', default: 200 }),
}).refine((p) => p.threshold <= p.window && (p.initial ?? 0) <= p.window, { message: '`threshold` and `initial` at most `window`' });

const Health = z.strictObject({
  consecutive_failures: z
    .number()
    .int()
    .min(0)
    .default(5)
    .meta({
      description:
        'Passive health: this many failures in a row (connect, timeout, reset, or a status in `failure_statuses`) eject a backend. 0 turns ejection off.',
      default: 5,
    }),
  failure_statuses: z
    .array(z.number().int().min(500).max(599))
    .default([502, 503, 504])
    .meta({ description: 'Origin statuses that count as failures for passive health.', default: [502, 503, 504] }),
  base_ejection: duration('10s', 'How long a first ejection lasts; the n-th ejection in a row lasts n times as long.'),
  max_ejection: duration('5m', 'Cap on one ejection’s length. A backend that stays healthy this long starts over at `base_ejection`.'),
  max_ejection_percent: z
    .number()
    .min(0)
    .max(100)
    .default(50)
    .meta({
      description:
        'Most backends of a pool that passive health may eject at once, in percent (rounded down; in a pool of two or more, at least one). Whatever the percentage, passive health never ejects a backend unless another one stays healthy: a pool of one backend is never ejected (its failures are still counted, logged and shown), so a few failing URLs cannot turn into an outage of the whole site. A backend that refuses connections is taken out whenever another one stays healthy, beyond this percentage: it carries nothing anyway.',
      default: 50,
    }),
  slow_start: duration(
    '5s',
    'A backend that becomes healthy again (probes, end of ejection, a trial connect after refusing, operator) ramps its share of traffic linearly from 10% to 100% over this time, so a process that just restarted (cold caches, JIT) is not handed a full share at once. 0 = full share at once. Not applied by the `hash` and `fallback` directors.',
  ),
  trial_connect_interval: duration(
    '500ms',
    'A backend taken out because it refused a connection (`connection_refused`, e.g. restarting) is tried with a bare TCP connect this often; the first connect that succeeds makes it half-open (one trial request, then full traffic, ramped by `slow_start`). A rolling restart then costs clients nothing: its refusals are retried elsewhere at once. 0 = no trial connects: it comes back half-open when its ejection (`base_ejection`) ends.',
  ),
  panic_threshold: z
    .number()
    .min(0)
    .max(1)
    .default(0.5)
    .meta({
      description:
        'Panic mode (Envoy’s healthy_panic_threshold, same default): when fewer than this share of a pool’s backends are healthy, health is ignored and requests go to all backends except those an operator set `sick` or `drain` (backends that just refused a connection last), and an error is logged. When every backend fails its probes, requests are still forwarded instead of failing `destination_unavailable` — unless a stale copy can answer, which is served instead. Trade-off: some requests reach sick backends and fail (and are retried), instead of every request failing when health checks are too eager or the healthy remainder cannot carry the load. 0 = never.',
      default: 0.5,
    }),
});

const RetryBudget = z.strictObject({
  percent: z
    .number()
    .min(0)
    .max(100)
    .default(20)
    .meta({
      description:
        'Retries may add at most this percentage of load on top of a pool’s regular requests (counted over `window`), so retries never multiply an outage. Only retries after a failure that may have put work on an origin count (timeouts, resets after the request was sent, 5xx); a retry after a failure that sent nothing to any origin (DNS, refused or timed-out connect, a reused keep-alive socket closed before any response byte) is never refused by the budget — it is still bounded by `max` and `deadline` — and is counted apart.',
      default: 20,
    }),
  min: z
    .number()
    .int()
    .min(0)
    .default(10)
    .meta({ description: 'Retries always allowed per `window`, so a quiet pool can still retry.', default: 10 }),
  window: duration('10s', 'The sliding window over which requests and retries are counted.'),
});

const Retries = z.strictObject({
  max: z
    .number()
    .int()
    .min(0)
    .max(10)
    .default(2)
    .meta({ description: 'Most retries of one request (attempts = 1 + max).', default: 2 }),
  deadline: duration('30s', 'No retry starts once the request is older than this.'),
  on_timeout: z
    .boolean()
    .default(false)
    .meta({
      description:
        'Retry an idempotent request whose backend did not answer within `first_byte` (`http_response_timeout`). Off: a slow backend’s work would be done twice — except when that backend had already failed the request before this one (failures in a row) or is now ejected: then the timeout is the backend’s (a black hole), and the request is retried elsewhere within the retry budget.',
      default: false,
    }),
  on_status: z
    .array(z.number().int().min(500).max(599))
    .default([])
    .meta({ description: 'Origin statuses (e.g. `[502, 503, 504]`) on which an idempotent request is retried on another backend, before anything is sent to the client.', default: [] }),
  body_buffer: size('64KiB', 'Request bodies of idempotent methods (PUT, DELETE...) up to this size are buffered so the request can be replayed; larger ones are never retried once sent.'),
  budget: RetryBudget.prefault({}).meta({ description: 'The retry budget of a pool (in a route: ignored, the pool’s applies).' }),
});

const Overload = z.strictObject({
  queue_timeout: duration(
    '3s',
    'Longest wait for a free slot (a backend’s learned limit or `max_connections`, or the pool’s `max_concurrency`); past it `connection_limit_reached`. A cacheable request with a usable stale copy does not wait: it gets the stale copy at once. 3 s: a short wait beats an error when an origin at capacity is briefly slower (1 s failed 2–4% of requests in the overload test on a loaded 2-core machine); nginx’s `queue` waits 60 s.',
  ),
  backend_queue: z
    .number()
    .int()
    .min(0)
    .default(1000)
    .meta({
      description:
        'Requests that may wait (first in, first out) for one backend at its concurrency limit; beyond it they fail `connection_limit_reached` at once (and are retried elsewhere). Large on purpose: the wait is bounded by `queue_timeout`, and the queue is where an adaptive limit puts the requests the origin cannot take yet.',
      default: 1000,
    }),
  adaptive: z
    .boolean()
    .default(true)
    .meta({
      description:
        'Learn each backend’s concurrency limit (AIMD on the origin’s 503/429, refusals and timeouts, paced by one probe at a time, with a latency check; see src/upstream/limiter.ts): requests beyond it wait in the backend queue instead of overloading the origin. An explicit `max_connections` stays a hard cap above it. Off: only `max_connections` limits.',
      default: true,
    }),
  initial_limit: z
    .number()
    .int()
    .min(1)
    .default(20)
    .meta({ description: 'The learned limit a backend starts at (Netflix concurrency-limits starts at 20); it grows while the backend keeps up, one step per confirmed probe.', default: 20 }),
  min_limit: z
    .number()
    .int()
    .min(1)
    .default(2)
    .meta({ description: 'The learned limit never goes below this (Envoy’s adaptive concurrency uses 3).', default: 2 }),
  max_limit: z
    .number()
    .int()
    .min(1)
    .default(1000)
    .meta({ description: 'The learned limit never goes above this (nor above the backend’s `max_connections`).', default: 1000 }),
  max_concurrency: z
    .number()
    .int()
    .min(0)
    .default(0)
    .meta({ description: 'Most requests a pool forwards at once (all backends together, the whole instance: split between `workers`). 0 = no limit.', default: 0 }),
  pool_queue: z
    .number()
    .int()
    .min(0)
    .default(64)
    .meta({
      description:
        'Requests that may wait for a pool slot. When it is full, load is shed: a cacheable request gets its stale copy if it has one, others a fast 503 with `Retry-After` (`connection_limit_reached`).',
      default: 64,
    }),
}).refine((o) => o.min_limit <= o.max_limit, { message: '`min_limit` at most `max_limit`', path: ['min_limit'] });

const DIRECTORS = ['round_robin', 'random', 'least_connections', 'hash', 'fallback'] as const;

const Pool = z.strictObject({
  name: z.string().regex(NAME, NAME_HINT).meta({ description: 'Pool name, referenced by `routes[].pool`; the `backends:` list is the pool named `default`.' }),
  director: z
    .enum(DIRECTORS)
    .default('round_robin')
    .meta({
      description:
        'How a backend is chosen: `round_robin` (smooth, weighted), `random` (weighted), `least_connections` (weighted), `hash` (consistent: a key stays on its backend; when one leaves only its keys move), `fallback` (the first healthy backend in list order; later ones are standby).',
      default: 'round_robin',
    }),
  hash_key: z
    .string()
    .regex(/^(url|header:[A-Za-z0-9-]+)$/, '`url` or `header:<name>`')
    .default('url')
    .meta({ description: 'For `hash`: what is hashed, `url` (host + path + query) or `header:<name>` (falls back to the URL when the header is absent).', default: 'url' }),
  zone: z
    .string()
    .optional()
    .meta({ description: 'The local zone: backends with this `zone` get all traffic while any of them is healthy; the others take over when none is.' }),
  backends: z.array(Backend).min(1, 'at least one backend').meta({ description: 'The pool’s origin servers (same keys as top-level `backends`).' }),
  probe: Probe.optional().meta({ description: 'Replaces the top-level `probes` for this pool.' }),
  health: Health.optional().meta({ description: 'Replaces the top-level `health` for this pool.' }),
  retries: Retries.optional().meta({ description: 'Replaces the top-level `retries` for this pool.' }),
  overload: Overload.optional().meta({ description: 'Replaces the top-level `overload` for this pool.' }),
});

const HOST_PATTERN = /^(\*\.)?[A-Za-z0-9.-]+(:\d{1,5})?$/;

const Route = z.strictObject({
  host: z
    .string()
    .regex(HOST_PATTERN, 'a host name, optionally with a port, or `*.example.com`')
    .optional()
    .meta({ description: 'Request `Host` this route matches (case-insensitive; `*.example.com` matches any subdomain). Default: any host.' }),
  path_prefix: z
    .string()
    .startsWith('/', 'a path starting with /')
    .default('/')
    .meta({ description: 'Path prefix this route matches. Routes are tried in order; the first match wins.', default: '/' }),
  pool: z.string().regex(NAME, NAME_HINT).meta({ description: 'The pool that serves matching requests.' }),
  cache: z.boolean().default(true).meta({ description: '`false`: never look up or store responses of this route (every request goes to the origin).', default: true }),
  ttl: optionalDuration('Freshness given to this route’s responses that carry none (overrides `cache.default_ttl`).'),
  stale_if_error: optionalDuration('Overrides `cache.stale_if_error` for this route’s responses.'),
  stale_while_revalidate: optionalDuration(
    'Overrides `cache.stale_while_revalidate` for this route’s responses (an opt-in deviation from RFC 9111 §4.2.4 for this route only).',
  ),
  grace: optionalDuration('Deprecated alias of this route’s `stale_if_error` (used when that is not set); see `cache.grace`.'),
  timeouts: Timeouts.pick({ first_byte: true, between_bytes: true })
    .optional()
    .meta({ description: 'Overrides of `first_byte` and `between_bytes` for this route (connect and idle belong to the backend’s connections).' }),
  retries: Retries.omit({ budget: true }).optional().meta({ description: 'Replaces the pool’s `retries` for this route (the pool’s retry budget still applies).' }),
});

const MaintenanceMode = z.enum(['off', 'stale-only', 'page']);
const isoTime = (doc: string) =>
  z
    .string()
    .refine((s) => !Number.isNaN(Date.parse(s)), 'a date and time like 2026-11-21T02:00:00Z')
    .transform((s) => Date.parse(s))
    .meta({ description: doc });

const Maintenance = z.strictObject({
  mode: MaintenanceMode.default('off').meta({
    description:
      'Global maintenance mode. `stale-only`: serve whatever is cached (even past `stale_if_error`, up to keep; never an expired must-revalidate object) and never contact the origin; what is not cached gets the maintenance page. `page`: every request gets the maintenance page.',
    default: 'off',
  }),
  pools: z
    .record(z.string(), MaintenanceMode)
    .default({})
    .meta({ description: 'Per-pool maintenance modes, e.g. `{ api: page }`; they win over the global `mode`.', default: {} }),
  windows: z
    .array(
      z.strictObject({
        from: isoTime('Start of the window (ISO 8601).'),
        until: isoTime('End of the window (ISO 8601); also the `Retry-After` of the maintenance page.'),
        mode: z.enum(['stale-only', 'page']).meta({ description: 'Mode while the window is open.' }),
        pools: z.array(z.string()).optional().meta({ description: 'Pools the window applies to. Default: all.' }),
      }),
    )
    .default([])
    .meta({ description: 'Scheduled maintenance windows, switched on and off automatically.', default: [] }),
  retry_after: duration('5m', '`Retry-After` of the maintenance page when no end time is known.'),
  page: z
    .strictObject({
      status: z.number().int().min(500).max(599).default(503).meta({ description: 'Status of the maintenance page.', default: 503 }),
      body: z
        .string()
        .default('<!doctype html><title>Down for maintenance</title><h1>Down for maintenance</h1><p>We will be back shortly.</p>\n')
        .meta({ description: 'The maintenance page (HTML).' }),
    })
    .prefault({})
    .meta({ description: 'The maintenance page.' }),
});

const Reload = z.strictObject({
  require_healthy: z
    .boolean()
    .default(false)
    .meta({ description: 'On reload, probe every backend of the new configuration once and refuse it if every backend of some pool fails.', default: false }),
  history: z.number().int().min(1).max(100).default(5).meta({ description: 'How many applied configurations are kept for `POST /api/rollback`.', default: 5 }),
});

export const ConfigSchema = z.strictObject({
  listen: Listen,
  compression: Compression.prefault({}).meta({ description: 'Response compression: stored objects are compressed once and kept in every coding; pass responses are compressed as they stream.' }),
  workers: z
    .union([z.literal('auto'), z.number().int().min(1).max(256)], { error: 'a whole number of worker processes from 1 to 256, or `auto` (one per core)' })
    .default('auto')
    .meta({
      description:
        'Worker processes sharing the listen port (README "Workers"). `auto`: one per core (`os.availableParallelism()`; on one core, a single process as with 1). With more than one, a primary process holds the fetch locks (one origin request per object across workers), relays purges, bans, maintenance, overrides and reloads to every worker before the admin API answers, and replaces a worker that dies; worker 0 serves the admin plane (`/metrics`, `/api/stats`, `/api/backends`, `/api/failures`, the dashboard and the alerts cover every worker) and runs the health probes for all. `cache.memory` is split: a thirty-second (at most 16 MiB) for the hand-off between workers, the rest evenly between their own caches. 1: one process, the whole `cache.memory` in one cache. With `fleet`, `auto` is 1 and more is refused (the workers would coordinate through their primary, not the fleet’s Redis). `lacquer serve --workers N` overrides.',
      default: 'auto',
    }),
  workers_balance: z
    .enum(['reuseport', 'cluster'])
    .default('reuseport')
    .meta({
      description:
        'How `workers` share the listen port. `reuseport`: each worker binds it with SO_REUSEPORT and the kernel spreads new connections (Linux; elsewhere, and with port 0, `cluster` is used). `cluster`: the primary accepts and hands connections to the workers round-robin (node:cluster).',
      default: 'reuseport',
    }),
  cache: Cache.prefault({}).meta({ description: 'The in-memory HTTP cache (RFC 9111 shared cache).' }),
  fleet: Fleet.optional().meta({
    description:
      'Several instances acting as one cache through Redis (README "Running a fleet"): a shared object store behind the local cache, fleet-wide request coalescing, purges reaching every instance. Off by default: without it nothing needs Redis.',
  }),
  timeouts: Timeouts.extend({
    client_send: duration(
      '60s',
      "Longest time a client may accept no byte of its response (nginx's `send_timeout`); past it the client connection is closed, and the origin fetch goes on only if the object is being stored or other requests wait for it. `0` disables it.",
    ),
  })
    .prefault({})
    .meta({ description: 'Defaults for every backend, and `client_send` for the client side.' }),
  backends: z
    .array(Backend)
    .default([])
    .meta({ description: 'The origin servers of the pool named `default` (round robin), used by requests no route matches. Optional when `pools` are given.', default: [] }),
  pools: z.array(Pool).default([]).meta({ description: 'Named pools of backends, each with its director and health settings.', default: [] }),
  routes: z
    .array(Route)
    .default([])
    .meta({ description: 'Host/path → pool, tried in order; a request no route matches goes to the `default` pool (the `backends:` list).', default: [] }),
  probes: Probe.prefault({}).meta({ description: 'Active health probes, Varnish style (default for every pool).' }),
  health: Health.prefault({}).meta({ description: 'Passive health (outlier ejection), slow start and panic mode (default for every pool).' }),
  retries: Retries.prefault({}).meta({ description: 'When a failed attempt is retried on another backend (default for every pool).' }),
  overload: Overload.prefault({}).meta({ description: 'Connection caps, wait queues and load shedding (default for every pool).' }),
  limits: Limits.prefault({}),
  errors: Errors.prefault({}),
  log: Log.prefault({}),
  proxy: Proxy.prefault({}),
  admin: Admin.prefault({}).meta({ description: 'The admin plane: health endpoints, JSON API, Prometheus `/metrics` and the live dashboard.' }),
  alerts: Alerts.prefault({}).meta({ description: 'Alert rules evaluated in-process, notified to webhooks.' }),
  maintenance: Maintenance.prefault({}).meta({ description: 'Maintenance mode: global, per pool, or in scheduled windows (also switchable over the admin API).' }),
  reload: Reload.prefault({}).meta({ description: 'Configuration reload (SIGHUP, `POST /api/reload`) and rollback.' }),
});
// Checks across settings (unique backend and pool names, routes naming a pool, admin.listen apart from
// listen, ...) live in semantics.ts: they run on the raw document even when the schema found problems, so
// `check` reports everything in one pass.

export type ConfigInput = z.input<typeof ConfigSchema>;
type Parsed = z.output<typeof ConfigSchema>;
export type BackendConfig = Parsed['backends'][number];
export type PoolConfig = Parsed['pools'][number];
export type RouteConfig = Parsed['routes'][number];
export type ProbeConfig = Parsed['probes'];
export type HealthConfig = Parsed['health'];
export type RetryConfig = Parsed['retries'];
/** A route's retry policy: the pool's `retries` without the budget. */
export type RetryPolicy = Omit<RetryConfig, 'budget'>;
export type OverloadConfig = Parsed['overload'];
export type FleetConfig = NonNullable<Parsed['fleet']>;
export type DirectorKind = PoolConfig['director'];
export type TimeoutConfig = { connect: number; first_byte: number; between_bytes: number; idle: number };
export type Config = Readonly<Parsed>;
export type CompressionConfig = Parsed['compression'];
export type Coding = (typeof CODINGS)[number];

/**
 * What `lacquer check` explains about settings that still work but changed meaning. `grace` used to serve an
 * expired object at once while refreshing it (stale-while-revalidate) *and* instead of an error; the first,
 * done by default, broke RFC 9111 §4.2.4, so it now means `stale_if_error` only.
 */
export function deprecationNotes(cfg: Config): string[] {
  const notes: string[] = [];
  const explain = (at: string, grace: number, sieSet: boolean) => {
    const use = sieSet ? `ignored: \`${at}.stale_if_error\` is set` : `read as \`${at}.stale_if_error: ${formatDuration(grace)}\` (served instead of an error)`;
    notes.push(`${at}.grace: ${formatDuration(grace)} — deprecated, ${use}; it no longer serves expired objects at once while refreshing them: set \`${at}.stale_while_revalidate\` for that (a deviation from RFC 9111 §4.2.4)`);
  };
  if (cfg.cache.grace !== undefined) explain('cache', cfg.cache.grace, cfg.cache.stale_if_error !== cfg.cache.grace);
  cfg.routes.forEach((r, i) => {
    if (r.grace !== undefined) explain(`routes[${i}]`, r.grace, r.stale_if_error !== undefined);
  });
  return notes;
}

export type MaintenanceModeName = z.output<typeof MaintenanceMode>;
export type MaintenanceConfig = z.output<typeof Maintenance>;

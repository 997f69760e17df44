// The one configuration schema. Every setting is declared here once, with its default, unit and a sentence
// for the operator (rendered into README's configuration reference by `npm run docs:config`).
// Values are validated once at load into a frozen object: durations in milliseconds, sizes in bytes.
import { z } from 'zod';
import { DURATION_HINT, SIZE_HINT, parseDuration, parseSize } from './units.ts';
import { parseCondition, SIGNALS, type Condition } from '../observe/alert-conditions.ts';

/** A duration setting: `250ms`, `3.5s`, `10m`, `1d`; stored as milliseconds. */
function duration(def: string, doc: string) {
  return z
    .union([z.string(), z.number()])
    .transform((v, ctx) => {
      const ms = parseDuration(v);
      if (ms === undefined) {
        ctx.addIssue({ code: 'custom', message: DURATION_HINT });
        return z.NEVER;
      }
      return ms;
    })
    .prefault(def)
    .meta({ description: doc, default: def, unit: 'duration' });
}

/** A size setting: `64KiB`, `256MiB`; stored as bytes. */
function size(def: string, doc: string) {
  return z
    .union([z.string(), z.number()])
    .transform((v, ctx) => {
      const bytes = parseSize(v);
      if (bytes === undefined) {
        ctx.addIssue({ code: 'custom', message: SIZE_HINT });
        return z.NEVER;
      }
      return bytes;
    })
    .prefault(def)
    .meta({ description: doc, default: def, unit: 'size' });
}

function optionalDuration(doc: string) {
  return z
    .union([z.string(), z.number()])
    .transform((v, ctx) => {
      const ms = parseDuration(v);
      if (ms === undefined) {
        ctx.addIssue({ code: 'custom', message: DURATION_HINT });
        return z.NEVER;
      }
      return ms;
    })
    .optional()
    .meta({ description: doc, unit: 'duration' });
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
    .meta({ description: 'Most concurrent connections to this backend. Default: unlimited.' }),
  weight: z.number().positive().default(1).meta({ description: 'Relative share of traffic.', default: 1 }),
  zone: z.string().optional().meta({ description: 'Optional zone label, for zone-aware pools.' }),
});

const Cache = z.strictObject({
  memory: size('256MiB', 'Upper bound on stored bytes (headers + bodies); least recently used objects are evicted beyond it.'),
  grace: duration(
    '1h',
    'How long past expiry a stale object may still be served: at once while one background fetch refreshes it, or instead of an error when the origin fails. A response `stale-while-revalidate` / `stale-if-error` overrides it for that object.',
  ),
  keep: duration('1d', 'How long past grace an object is kept only for conditional revalidation (If-None-Match / If-Modified-Since).'),
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
      description: 'Honour request `Cache-Control` (no-cache, max-age, ...) from clients. Off so a client cannot force origin traffic.',
      default: false,
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
    .meta({ description: 'Where access log lines (one JSON object per request) go: `stdout`, `stderr`, `off` or a file path.', default: 'stdout' }),
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
  const seen = new Set<string>();
  a.rules.forEach((r, i) => {
    if (seen.has(r.name)) ctx.addIssue({ code: 'custom', path: ['rules', i, 'name'], message: 'a name not used by another rule' });
    seen.add(r.name);
  });
});

export const ConfigSchema = z.strictObject({
  listen: listenAddress('127.0.0.1:6081', 'Address of the client-facing HTTP listener.'),
  cache: Cache.prefault({}).meta({ description: 'The in-memory HTTP cache (RFC 9111 shared cache).' }),
  timeouts: Timeouts.prefault({}).meta({ description: 'Defaults for every backend.' }),
  backends: z
    .array(Backend)
    .min(1, 'at least one backend')
    .meta({ description: 'The origin servers. Requests alternate between them.' }),
  limits: Limits.prefault({}),
  errors: Errors.prefault({}),
  log: Log.prefault({}),
  proxy: Proxy.prefault({}),
  admin: Admin.prefault({}).meta({ description: 'The admin plane: health endpoints, JSON API, Prometheus `/metrics` and the live dashboard.' }),
  alerts: Alerts.prefault({}).meta({ description: 'Alert rules evaluated in-process, notified to webhooks.' }),
}).superRefine((cfg, ctx) => {
  const seen = new Set<string>();
  cfg.backends.forEach((b, i) => {
    if (seen.has(b.name)) ctx.addIssue({ code: 'custom', path: ['backends', i, 'name'], message: 'a name not used by another backend' });
    seen.add(b.name);
  });
});

export type ConfigInput = z.input<typeof ConfigSchema>;
type Parsed = z.output<typeof ConfigSchema>;
export type BackendConfig = Parsed['backends'][number];
export type TimeoutConfig = { connect: number; first_byte: number; between_bytes: number; idle: number };
export type Config = Readonly<Parsed>;

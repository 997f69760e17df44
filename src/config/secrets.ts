// Secrets in configuration values, masked wherever a value is shown: GET /api/config, /api/alerts, log lines,
// error messages and `lacquer check` (issue 11 item 9: webhook userinfo, `X-Api-Key` values, probe
// `Authorization` lines, Slack path secrets and `?token=` values were all shown in clear).
// What counts as secret: URL userinfo, every query value, token-like path segments (Slack
// `/services/T…/B…/…`, Discord `/webhooks/<id>/<token>`), every header value of a request Lacquer is
// configured to send (webhook `headers`, probe `request` lines) except `Host`, and settings whose name says
// token, secret, password, key or authorization.

export const MASK = '***';

/** Keys whose string value is a secret whatever it looks like. */
const SECRET_KEY = /token|secret|passw(or)?d|authorization|api[-_]?key|cookie|credential/i;
/** Path segments after these are credentials in the webhook URLs of Slack, Discord, Teams and the like. */
const SECRET_AFTER = new Set(['services', 'webhooks', 'hooks', 'webhook']);
/** A path segment that looks generated: long, URL-safe, with a digit (ids and tokens, never words). */
const TOKEN_LIKE = /^(?=.*\d)[A-Za-z0-9_\-.~+=]{16,}$/;

/** `http://user:pw@h/services/T1/B2/x?token=y` → `http://***@h/services/***\/***\/***?token=***`. Not a URL: unchanged. */
export function maskUrl(text: string): string {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    return text;
  }
  if (!/^[a-z][a-z0-9+.-]*:$/.test(u.protocol) || !u.host) return text;
  const userinfo = u.username || u.password ? `${MASK}@` : '';
  let after = false;
  let masked = userinfo !== '' || u.search !== '' || u.hash !== '';
  const path = u.pathname
    .split('/')
    .map((seg) => {
      const secret = after || TOKEN_LIKE.test(seg);
      if (SECRET_AFTER.has(seg.toLowerCase())) after = true;
      if (!secret || !seg) return seg;
      masked = true;
      return MASK;
    })
    .join('/');
  const query = u.search ? `?${[...u.searchParams.keys()].map((k) => `${encodeURIComponent(k)}=${MASK}`).join('&')}` : '';
  // Unchanged URLs are returned as written (no normalisation: `http://h:1` stays without its `/`).
  return masked ? `${u.protocol}//${userinfo}${u.host}${path}${query}${u.hash ? `#${MASK}` : ''}` : text;
}

/** Every URL and `Bearer`/`Basic` credential in free text (log messages, error messages) masked. */
export function maskText(text: string): string {
  return text
    .replace(/\b[a-z][a-z0-9+.-]*:\/\/[^\s"'<>`]+/gi, (m) => {
      // Trailing punctuation belongs to the sentence, not the URL.
      const tail = /[),.;:]+$/.exec(m)?.[0] ?? '';
      return maskUrl(m.slice(0, m.length - tail.length)) + tail;
    })
    .replace(/\b(Bearer|Basic)\s+[^\s"',;]+/gi, `$1 ${MASK}`);
}

/** One `Name: value` line of a configured raw request: the value masked, except for `Host`. */
function maskHeaderLine(line: string): string {
  const i = line.indexOf(':');
  if (i <= 0 || /\s/.test(line.slice(0, i))) return maskText(line); // the request line, or not a header
  const name = line.slice(0, i);
  return name.toLowerCase() === 'host' ? line : `${name}: ${MASK}`;
}

/** A string value at `path` (dotted keys, e.g. `alerts.webhooks.0.headers.X-Api-Key`) as it may be shown. */
export function maskValue(path: readonly (string | number)[], value: string): string {
  const keys = path.filter((k): k is string => typeof k === 'string');
  const key = keys.at(-1) ?? '';
  if (/^\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}$/.test(value)) return value; // a reference to the environment reveals nothing
  if (keys.at(-2) === 'headers' || SECRET_KEY.test(key)) return value ? MASK : value;
  if (key === 'request') return maskHeaderLine(value);
  return maskText(value);
}

/** A deep copy of a configuration (or any part of it) with every secret masked. */
export function maskSecrets(value: unknown, path: readonly (string | number)[] = []): unknown {
  if (typeof value === 'string') return maskValue(path, value);
  if (Array.isArray(value)) return value.map((v, i) => maskSecrets(v, [...path, i]));
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, maskSecrets(v, [...path, k])]));
  return value;
}

// Cache keys and Vary (RFC 9111 §2, §4.1). The primary key is the target URI; a response that varies is
// stored under the primary key plus the normalised values of the request fields it names.
import { isIPv6 } from 'node:net';

/** A Host field value checked against RFC 9110 §7.2 / RFC 3986 §3.2.2-3.2.3: `uri-host [ ":" port ]`. */
export type Authority = {
  /** reg-name (IPv4 included) or IP-literal with its brackets, lowercased (§3.2.2: host is case-insensitive). */
  readonly host: string;
  /** The port digits as sent; undefined when absent. An empty port (`example.com:`) is kept as '' */
  readonly port: string | undefined;
};

/** reg-name = *( unreserved / pct-encoded / sub-delims ) (RFC 3986 §3.2.2); IPv4address is a subset of it. */
const REG_NAME = /^(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+$/;
/** IPvFuture = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" ) */
const IPV_FUTURE = /^v[0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+$/;
const PORT = /^\d{0,5}$/;

/**
 * Parses a Host field value; undefined when it is not `uri-host [ ":" port ]`. An empty host is refused
 * too: RFC 9110 §4.2.1 makes an http URI with an empty host invalid. Nothing that could end the authority
 * of a URI (`/`, `?`, `#`, `@`, whitespace, a second `:`) gets through, which is what keeps the primary
 * key below unambiguous (issue 11: `Host: victim.example/poison1` shared an entry with another URL).
 */
export function parseAuthority(value: string): Authority | undefined {
  let host: string;
  let rest: string;
  if (value.startsWith('[')) {
    const close = value.indexOf(']');
    if (close < 0) return undefined;
    const literal = value.slice(1, close);
    if (!isIPv6(literal) && !IPV_FUTURE.test(literal)) return undefined;
    host = value.slice(0, close + 1);
    rest = value.slice(close + 1);
    if (rest !== '' && !rest.startsWith(':')) return undefined;
  } else {
    const colon = value.indexOf(':');
    host = colon < 0 ? value : value.slice(0, colon);
    rest = colon < 0 ? '' : value.slice(colon);
    if (!REG_NAME.test(host)) return undefined;
  }
  if (rest === '') return { host: host.toLowerCase(), port: undefined };
  const port = rest.slice(1);
  if (!PORT.test(port) || Number(port) > 65535) return undefined;
  return { host: host.toLowerCase(), port };
}

/**
 * Primary cache key: the authority (host lowercased, port as sent) followed by the path and query, as
 * received. The separator is the URI's own: an authority ends at the first `/` (RFC 3986 §3.2) and a
 * validated authority never contains one, so two different (host, target) pairs never make the same key.
 * The form stays `host/path?query`, the form purges and bans are written in. The port is kept as sent,
 * and `example.com.` stays apart from `example.com`: the origin may answer them differently (Varnish keys
 * on the Host as sent, too). Throws on an authority that receive() would have refused, or a target that
 * is not origin-form: either is a bug in the caller, never a key to share.
 */
export function primaryKey(host: string, pathAndQuery: string): string {
  const a = parseAuthority(host);
  if (!a) throw new TypeError(`not a valid Host for a cache key: ${JSON.stringify(host)}`);
  return authorityKey(a, pathAndQuery);
}

/** primaryKey() of an authority already parsed (receive() parses every request's Host once). */
export function authorityKey(a: Authority, pathAndQuery: string): string {
  if (!pathAndQuery.startsWith('/')) throw new TypeError(`not an origin-form target for a cache key: ${JSON.stringify(pathAndQuery)}`);
  return a.port === undefined ? a.host + pathAndQuery : `${a.host}:${a.port}${pathAndQuery}`;
}

/** Field names of a Vary header, lowercased and sorted; `'*'` when it contains `*`; [] when absent. */
export function parseVary(v: string | string[] | undefined): string[] | '*' {
  if (v === undefined) return [];
  const names = (Array.isArray(v) ? v.join(',') : v)
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean);
  if (names.includes('*')) return '*';
  return [...new Set(names)].sort();
}

/**
 * The secondary key: the request's values for the Vary fields, normalised by combining repeated fields
 * and collapsing whitespace after commas (§4.1 permits normalisation), so `gzip,br` matches `gzip, br`.
 */
export function varyKey(fields: readonly string[], reqHeaders: Record<string, string | string[] | undefined>): string {
  if (fields.length === 0) return '';
  let out = '';
  for (const f of fields) {
    const v = reqHeaders[f];
    const s = v === undefined ? '' : (Array.isArray(v) ? v.join(',') : v).replace(/\s*,\s*/g, ',').trim();
    out += `\n${f}:${v === undefined ? '\u0000' : s}`;
  }
  return out;
}

/** The full key of one variant: the primary key, plus the request's values of the Vary fields when there are any. */
export function variantKey(primary: string, fields: readonly string[], reqHeaders: Record<string, string | string[] | undefined>): string {
  return fields.length === 0 ? primary : primary + varyKey(fields, reqHeaders);
}

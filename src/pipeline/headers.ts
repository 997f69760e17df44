// Header rewriting both ways: hop-by-hop fields removed (RFC 9110 §7.6.1, including those named in
// Connection), Via added (§7.6.3), X-Forwarded-* set, and the fields a cache fetch must not forward.
import type { IncomingMessage } from 'node:http';
import type { Headers } from '../cache/storable.ts';

/** Always hop-by-hop (RFC 9110 §7.6.1), plus Proxy-Connection which old clients still send. */
const HOP_BY_HOP = new Set(['connection', 'proxy-connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

/** Not forwarded to the origin on a cache fetch: the proxy fetches the full object and answers conditionals itself. */
const CONDITIONAL = new Set(['if-none-match', 'if-modified-since', 'if-match', 'if-unmodified-since', 'if-range', 'range']);

/** Set by the proxy itself. */
const OWN_REQUEST = new Set(['x-request-id', 'expect', 'via', 'traceparent', 'tracestate']);
const FORWARDED = new Set(['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host']);

/**
 * Request fields a `Connection` token never removes (issue 11): Host keys the cache and the route, so an
 * origin that saw none (`Connection: host`) could store its default-vhost answer under the client's Host;
 * Content-Length and Transfer-Encoding frame the body (removing one desynchronises proxy and origin);
 * Authorization and Cookie decide whether an answer may be shared (RFC 9111 §3.5, `cache.cookie_requests`),
 * so the origin must see what the cache judged. nginx ignores Connection tokens on requests altogether.
 */
const NEVER_CONNECTION_NAMED: ReadonlySet<string> = new Set(['host', 'content-length', 'transfer-encoding', 'authorization', 'cookie', 'connection']);

function connectionTokens(v: string | string[] | undefined, keep?: ReadonlySet<string>): Set<string> | undefined {
  if (v === undefined) return undefined;
  const s = Array.isArray(v) ? v.join(',') : v;
  if (!s) return undefined;
  const out = new Set<string>();
  for (const t of s.split(',')) {
    const name = t.trim().toLowerCase();
    if (name && !keep?.has(name)) out.add(name);
  }
  return out.size ? out : undefined;
}

/**
 * Applies the client's `Connection` tokens at receive: the fields it names (RFC 9110 §7.6.1) are removed
 * from the request itself, so the cache key, Vary matching, routing and storability all judge the request
 * the origin receives; removing them only on the way out let one request be stored under fields the origin
 * never saw. The fields in NEVER_CONNECTION_NAMED stay.
 */
export function applyConnection(req: IncomingMessage): void {
  const named = connectionTokens(req.headers.connection, NEVER_CONNECTION_NAMED);
  if (!named) return;
  const raw = req.rawHeaders;
  for (let i = raw.length - 2; i >= 0; i -= 2) if (named.has(raw[i]!.toLowerCase())) raw.splice(i, 2);
  for (const name of named) delete req.headers[name];
}

export type OriginRequestOptions = {
  requestId: string;
  via: string;
  trustForwarded: boolean;
  hostHeader: string | undefined;
  /** A cache fetch: drop client conditionals and Range (the proxy answers them from the stored object). */
  cacheFetch: boolean;
  /** Validators of a stored object to revalidate. */
  revalidate?: { etag?: string; lastModified?: string };
  traceparent?: string;
  tracestate?: string;
};

/** Builds the flat header list sent to the origin from the client request. */
export function originRequestHeaders(req: IncomingMessage, o: OriginRequestOptions): string[] {
  const raw = req.rawHeaders;
  const named = connectionTokens(req.headers.connection, NEVER_CONNECTION_NAMED);
  const out: string[] = [];
  let xff: string | undefined;
  let via: string | undefined;
  let proto: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || named?.has(lower) || OWN_REQUEST.has(lower)) {
      if (lower === 'via') via = via ? `${via}, ${raw[i + 1]}` : raw[i + 1];
      continue;
    }
    if (FORWARDED.has(lower)) {
      if (o.trustForwarded) {
        if (lower === 'x-forwarded-for') xff = xff ? `${xff}, ${raw[i + 1]}` : raw[i + 1];
        else if (lower === 'x-forwarded-proto') proto = raw[i + 1];
        else out.push(name, raw[i + 1]!);
      }
      continue;
    }
    if (o.cacheFetch && CONDITIONAL.has(lower)) continue;
    if (lower === 'host' && o.hostHeader) continue;
    out.push(name, raw[i + 1]!);
  }
  if (o.hostHeader) out.push('host', o.hostHeader);
  const client = req.socket.remoteAddress ?? '';
  out.push('x-forwarded-for', xff ? `${xff}, ${client}` : client);
  out.push('x-forwarded-proto', proto ?? ('encrypted' in req.socket ? 'https' : 'http'));
  out.push('via', via ? `${via}, ${o.via}` : o.via);
  out.push('x-request-id', o.requestId);
  if (o.traceparent) out.push('traceparent', o.traceparent);
  if (o.tracestate) out.push('tracestate', o.tracestate);
  if (o.revalidate?.etag) out.push('if-none-match', o.revalidate.etag);
  if (o.revalidate?.lastModified) out.push('if-modified-since', o.revalidate.lastModified);
  return out;
}

/**
 * The origin response's end-to-end fields as a flat list, without hop-by-hop fields, and with our Via
 * appended. Fields in `skip` (lowercase) are left out too (e.g. `age`, recomputed for cached objects).
 */
export function responseHeaderList(h: Headers, via: string, skip?: ReadonlySet<string>): string[] {
  const named = connectionTokens(h['connection']);
  const out: string[] = [];
  let upstreamVia: string | undefined;
  for (const name in h) {
    const v = h[name];
    if (v === undefined || HOP_BY_HOP.has(name) || named?.has(name) || skip?.has(name)) continue;
    if (name === 'via') {
      upstreamVia = Array.isArray(v) ? v.join(', ') : v;
      continue;
    }
    if (Array.isArray(v)) for (const x of v) out.push(name, x);
    else out.push(name, v);
  }
  out.push('via', upstreamVia ? `${upstreamVia}, ${via}` : via);
  return out;
}

/** The lowercased end-to-end header map of an origin response (for storing). */
export function endToEnd(h: Headers): Headers {
  const named = connectionTokens(h['connection']);
  const out: Headers = {};
  for (const name in h) if (!HOP_BY_HOP.has(name) && !named?.has(name)) out[name] = h[name];
  return out;
}

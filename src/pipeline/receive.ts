// Receive: normalise the request and refuse what an open proxy would accept. Runs before anything else.
import { parseAuthority } from '../cache/key.ts';
import type { Exchange } from '../server/exchange.ts';
import type { ProxyContext } from './context.ts';
import { applyConnection } from './headers.ts';
import { ALLOW, METHOD_TOKEN, REFUSED_METHODS } from './methods.ts';

export { ALLOW };

export type Refusal = { status: number; text: string; headers?: string[] };

/** Returns a refusal, or undefined when the request may proceed (with ex.target/ex.host normalised). */
export function receive(ctx: ProxyContext, ex: Exchange): Refusal | undefined {
  if (ex.method !== 'GET' && (REFUSED_METHODS.has(ex.method) || !METHOD_TOKEN.test(ex.method))) {
    return { status: 405, text: `Method ${ex.method} is not supported by this proxy`, headers: ['allow', ALLOW] };
  }
  const framing = checkFraming(ex);
  if (framing) return framing;
  const host = checkHost(ex);
  if (host) return host;
  let target = ex.target;
  if (!target.startsWith('/')) {
    // absolute-form (RFC 9112 §3.2.2): accepted only for the host named in Host, then made origin-form.
    if (target === '*') return { status: 400, text: 'asterisk-form is only valid for OPTIONS to the proxy itself' };
    let url: URL;
    try {
      url = new URL(target);
    } catch {
      return { status: 400, text: 'Malformed request target' };
    }
    if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.host.toLowerCase() !== ex.host.toLowerCase()) {
      return { status: 400, text: `This is not an open proxy: requests for ${url.host || target} are refused` };
    }
    target = url.pathname + url.search;
  }
  ex.target = target;
  // From here on every step (key, route, Vary, storability) sees the request the origin will see.
  applyConnection(ex.req);
  const len = ex.req.headers['content-length'];
  if (len !== undefined && Number(len) > ctx.config.limits.request_body_size) {
    return { status: 413, text: `Request body of ${len} bytes is over the limit of ${ctx.config.limits.request_body_size} bytes` };
  }
  return undefined;
}

/**
 * Transfer-Encoding that Lacquer would have to guess about is refused, as nginx does, never re-framed
 * (issue 11): a request whose body length two parsers could read differently is the seed of request
 * smuggling. The connection is closed after the answer, since where the body ends is not known.
 */
function checkFraming(ex: Exchange): Refusal | undefined {
  const te = ex.req.headers['transfer-encoding'];
  if (te === undefined) return undefined;
  if (ex.req.httpVersion === '1.0') {
    // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means the framing is faulty.
    ex.res.shouldKeepAlive = false;
    return { status: 400, text: 'Transfer-Encoding is not valid in an HTTP/1.0 request' };
  }
  if (te.trim().toLowerCase() !== 'chunked') {
    // RFC 9112 §6.1: a transfer coding the server does not understand is a 501. `identity, chunked` or
    // `gzip, chunked` would need Lacquer to decode and re-frame: nginx refuses anything but `chunked`.
    ex.res.shouldKeepAlive = false;
    return { status: 501, text: `Transfer-Encoding ${JSON.stringify(te)} is not supported: only "chunked"` };
  }
  return undefined;
}

/** RFC 9110 §7.2: a request without Host, with more than one, or with an invalid one is a 400. */
function checkHost(ex: Exchange): Refusal | undefined {
  const raw = ex.req.rawHeaders;
  let count = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 4 && (name === 'Host' || name === 'host' || name.toLowerCase() === 'host')) count++;
  }
  if (count === 0 || !ex.host) return { status: 400, text: 'Missing Host header' };
  // Node keeps the first of two Host fields: which one the origin would use is anyone's guess.
  if (count > 1) return { status: 400, text: 'More than one Host header' };
  const authority = parseAuthority(ex.host);
  if (!authority) return { status: 400, text: 'Invalid Host header: expected host[:port] (RFC 9110 §7.2)' };
  ex.authority = authority;
  return undefined;
}

// Receive: normalise the request and refuse what an open proxy would accept. Runs before anything else.
import type { Exchange } from '../server/exchange.ts';
import type { ProxyContext } from './context.ts';

/** The standard methods, named in `Allow` when a method is refused. */
export const KNOWN_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']);
export const ALLOW = [...KNOWN_METHODS].join(', ');
/**
 * Never forwarded: CONNECT would make Lacquer an open tunnel; TRACE reflects the request, credentials
 * included, back to the client (RFC 9110 §9.3.8). Any other method is forwarded as a pass — extension
 * methods such as PROPFIND or M-SEARCH too (RFC 9110 §9.1: a proxy forwards methods it does not know) —
 * and invalidates the URI when it may be unsafe (RFC 9111 §4.4, steps.ts).
 */
const REFUSED_METHODS: ReadonlySet<string> = new Set(['CONNECT', 'TRACE']);
/** RFC 9110 §9.1: method = token. */
const METHOD_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

export type Refusal = { status: number; text: string; headers?: string[] };

/** Returns a refusal, or undefined when the request may proceed (with ex.target/ex.host normalised). */
export function receive(ctx: ProxyContext, ex: Exchange): Refusal | undefined {
  if (REFUSED_METHODS.has(ex.method) || !METHOD_TOKEN.test(ex.method)) {
    return { status: 405, text: `Method ${ex.method} is not supported by this proxy`, headers: ['allow', ALLOW] };
  }
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
  if (!ex.host) return { status: 400, text: 'Missing Host header' };
  ex.target = target;
  const len = ex.req.headers['content-length'];
  if (len !== undefined && Number(len) > ctx.config.limits.request_body_size) {
    return { status: 413, text: `Request body of ${len} bytes is over the limit of ${ctx.config.limits.request_body_size} bytes` };
  }
  return undefined;
}

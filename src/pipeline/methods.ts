// What Lacquer knows about request methods, in one place: which it refuses, which are safe (their answers
// invalidate nothing, RFC 9111 §4.4) and which are idempotent (a failed attempt may be retried, RFC 9110 §9.2.2).
// Every other syntactically valid method is forwarded as a pass (RFC 9110 §9.1: a proxy forwards methods it
// does not know) and treated as neither safe nor idempotent.

/** RFC 9110 §9.1: method = token. */
export const METHOD_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** The standard methods, named in `Allow` when a method is refused. */
export const ALLOW = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'].join(', ');

/**
 * Never forwarded: CONNECT would make Lacquer an open tunnel; TRACE reflects the request, credentials
 * included, back to the client (RFC 9110 §9.3.8).
 */
export const REFUSED_METHODS: ReadonlySet<string> = new Set(['CONNECT', 'TRACE']);

/**
 * Safe (RFC 9110 §9.2.1; PROPFIND RFC 4918 §9.1, REPORT RFC 3253 §3.6, SEARCH RFC 5323 §2, QUERY): their
 * answers do not invalidate the URI. Unknown methods such as M-SEARCH may be unsafe, and do.
 */
const SAFE: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'PROPFIND', 'REPORT', 'SEARCH', 'QUERY']);

/** RFC 9110 §9.2.2: safe methods, plus PUT and DELETE — repeating them has the effect of one request. */
const IDEMPOTENT: ReadonlySet<string> = new Set([...SAFE, 'PUT', 'DELETE']);

export function isSafe(method: string): boolean {
  return SAFE.has(method);
}

export function isIdempotent(method: string): boolean {
  return IDEMPOTENT.has(method);
}

// May this response be stored, and for how long may it be reused? (RFC 9111 §3, §3.5, §4.2, §5.2; RFC 9213; RFC 5861)
import { parseCacheControl, type Directives } from './cache-control.ts';
import { correctedInitialAge, freshnessLifetime, HEURISTIC_STATUSES, parseAge, parseHttpDate, type Lifetime } from './freshness.ts';
import { parseVary } from './key.ts';

export type Headers = Record<string, string | string[] | undefined>;

/** Final status codes whose caching semantics Lacquer implements: those RFC 9110 §15 defines (for must-understand, §5.2.2.3). */
const UNDERSTOOD_STATUSES: ReadonlySet<number> = new Set([
  200, 201, 202, 203, 204, 205, 206, 300, 301, 302, 303, 304, 305, 307, 308, 400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413,
  414, 415, 416, 417, 421, 422, 426, 500, 501, 502, 503, 504, 505,
]);

/** Why a response was not stored: a closed union, reported in Cache-Status `detail` and the log. */
export type NotStorableReason =
  | 'method'
  | 'status'
  | 'error-status'
  | 'no-store'
  | 'private'
  | 'authorization'
  | 'set-cookie'
  | 'vary-star'
  | 'no-freshness'
  | 'too-large'
  | 'request-no-store'
  /** cache.cookie_requests=pass: the request carried Cookie and the response did not say it may be shared. */
  | 'cookie';

export type StoragePolicy = {
  defaultTtlMs: number;
  heuristicFraction: number;
  heuristicMaxMs: number;
  /** How long past expiry an object may stand in for a failed fetch, when the response does not say (RFC 5861 §4). */
  staleIfErrorMs: number;
  /** Operator opt-in to serve expired objects at once while revalidating (a deviation from RFC 9111 §4.2.4). */
  staleWhileRevalidateMs: number;
  keepMs: number;
  storeSetCookie: boolean;
  honorClientCacheControl: boolean;
  cookieRequests: 'pass' | 'ignore';
};

export type Freshness = {
  lifetime: Lifetime;
  /** corrected initial age (§4.2.3), ms */
  initialAgeMs: number;
  /** May be served stale at once while revalidating (the response's stale-while-revalidate, or the operator's opt-in), ms past expiry. */
  swrMs: number;
  /** May be served stale when the fetch fails (stale-if-error, the response's or cache.stale_if_error), ms past expiry. */
  sieMs: number;
  /** Kept this long past the stale windows, only to revalidate with validators. */
  keepMs: number;
  /** must-revalidate / proxy-revalidate / no-cache: never served stale; s-maxage (§5.2.2.10): not without an explicit RFC 5861 directive. */
  noStaleServe: boolean;
  /** no-cache: every reuse must be validated with the origin (§5.2.2.4). */
  alwaysRevalidate: boolean;
};

export type StoreDecision = { store: true; freshness: Freshness } | { store: false; reason: NotStorableReason; freshness?: undefined };

export type ResponseFacts = { status: number; headers: Headers; requestTimeMs: number; responseTimeMs: number };

/**
 * The directives that govern this cache (RFC 9213 §2.1): CDN-Cache-Control when present and valid, and then
 * *instead of* Cache-Control entirely — `CDN-Cache-Control: max-age=60` with `Cache-Control: no-store` is
 * stored for 60 s (the origin addressed the CDN separately from browsers). Otherwise Cache-Control.
 */
export function governingDirectives(h: Headers): { directives: Directives; targeted: boolean } {
  const cdn = h['cdn-cache-control'];
  if (cdn !== undefined && isStructuredDictionary(Array.isArray(cdn) ? cdn.join(',') : cdn)) return { directives: parseCacheControl(cdn), targeted: true };
  return { directives: parseCacheControl(h['cache-control']), targeted: false };
}

/** One member of an RFC 8941 dictionary: lowercase key, optional bare item (integer, decimal, string, token, boolean, byte sequence), parameters. */
const SF_MEMBER = /^[a-z*][a-z0-9_\-.*]*(=(-?\d{1,15}(\.\d{1,3})?|"(?:[^"\\]|\\["\\])*"|[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*|\?[01]|:[A-Za-z0-9+/=]*:))?(;[^,]*)?$/;

/**
 * RFC 9213 §2.1: a targeted field is an RFC 8941 dictionary; one that does not parse (empty, `Max-Age=60`,
 * `max-age=60s`) MUST be ignored, and Cache-Control then governs. A light check of the members, enough to
 * tell a valid field from a broken one; quoted commas are kept inside their member.
 */
function isStructuredDictionary(value: string): boolean {
  const members: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (quoted && c === '\\') {
      cur += c + (value[++i] ?? '');
      continue;
    }
    if (c === '"') quoted = !quoted;
    if (c === ',' && !quoted) {
      members.push(cur);
      cur = '';
    } else cur += c;
  }
  members.push(cur);
  return !quoted && members.every((m) => SF_MEMBER.test(m.trim()));
}

export function decideStorage(method: string, reqHeaders: Headers, res: ResponseFacts, p: StoragePolicy): StoreDecision {
  // §3: only responses to methods we understand as cacheable. HEAD misses are fetched as GET.
  if (method !== 'GET') return { store: false, reason: 'method' };
  // Never let an error replace a good object: 5xx are not stored (stale-if-error serves the old one instead).
  if (res.status >= 500) return { store: false, reason: 'error-status' };
  // §3: final responses only; 206 and 304 are not complete objects.
  if (res.status < 200 || res.status === 206 || res.status === 304) return { store: false, reason: 'status' };
  if (p.honorClientCacheControl && parseCacheControl(reqHeaders['cache-control']).noStore) return { store: false, reason: 'request-no-store' };

  const { directives: d, targeted } = governingDirectives(res.headers);
  // §5.2.2.3: a cache MUST NOT store a must-understand response whose status code it does not understand.
  // (It may then ignore no-store; Lacquer keeps honouring no-store: the safe reading.)
  if (d.mustUnderstand && !UNDERSTOOD_STATUSES.has(res.status)) return { store: false, reason: 'status' };
  // §5.2.2.5 no-store.
  if (d.noStore) return { store: false, reason: 'no-store' };
  // §5.2.2.7: a shared cache MUST NOT store a `private` response.
  if (d.private) return { store: false, reason: 'private' };
  // §3.5: a request with Authorization is stored only if the response says so explicitly.
  if (reqHeaders['authorization'] !== undefined && !(d.mustRevalidate || d.public || d.sMaxage !== undefined)) {
    return { store: false, reason: 'authorization' };
  }
  // cache.cookie_requests=pass (Varnish's built-in rule): RFC 9111 lets a response to a request with Cookie be
  // shared when it says nothing, but a page personalised by that cookie would then reach other visitors
  // (issue 11 item 8). Shared only when the origin said so: `public`, `s-maxage`, or keyed by `Vary: Cookie`.
  if (p.cookieRequests === 'pass' && reqHeaders['cookie'] !== undefined && !(d.public || d.sMaxage !== undefined || varies(res.headers, 'cookie'))) {
    return { store: false, reason: 'cookie' };
  }
  // One visitor's cookie must never be served to another.
  if (!p.storeSetCookie && res.headers['set-cookie'] !== undefined) return { store: false, reason: 'set-cookie' };
  // §4.1: Vary: * never matches a later request.
  if (parseVary(res.headers['vary']) === '*') return { store: false, reason: 'vary-star' };

  const dateMs = parseHttpDate(res.headers['date']);
  const expiresRaw = res.headers['expires'];
  const expiresMs = parseHttpDate(expiresRaw);
  const lifetime = freshnessLifetime(
    {
      status: res.status,
      directives: d,
      targeted,
      dateMs,
      expiresMs,
      expiresInvalid: expiresRaw !== undefined && expiresMs === undefined,
      lastModifiedMs: parseHttpDate(res.headers['last-modified']),
      responseTimeMs: res.responseTimeMs,
    },
    { defaultTtlMs: p.defaultTtlMs, heuristicFraction: p.heuristicFraction, heuristicMaxMs: p.heuristicMaxMs },
  );
  const hasValidator = res.headers['etag'] !== undefined || res.headers['last-modified'] !== undefined;
  // A response that says nothing about freshness and has no validator is never reused (safe default;
  // cache.default_ttl opts in). With a validator it is stored for conditional revalidation only — and
  // only when §3 allows storing it at all without explicit freshness: a heuristically cacheable status
  // or `public` (a 302 with just an ETag must not be stored, nor served on error).
  const heuristicallyCacheable = HEURISTIC_STATUSES.has(res.status) || d.public;
  if (lifetime.source === 'none' && (!hasValidator || !heuristicallyCacheable)) return { store: false, reason: 'no-freshness' };

  const explicitSwr = d.staleWhileRevalidate !== undefined;
  const explicitSie = d.staleIfError !== undefined;
  // §5.2.2.2 must-revalidate, §5.2.2.8 proxy-revalidate (must-revalidate for shared caches), §5.2.2.4
  // no-cache: a stale copy is never used without successful validation, whatever RFC 5861 directive says.
  const never = d.mustRevalidate || d.proxyRevalidate || d.noCache;
  // §5.2.2.10 s-maxage implies proxy-revalidate, but an explicit RFC 5861 directive next to it is taken as
  // the origin's permission for that window (`s-maxage=60, stale-while-revalidate=30` is common).
  const noStale = never || d.sMaxage !== undefined;
  // Without freshness information (validator only), or stale on arrival (max-age=0, an Expires at or before
  // Date, an invalid Expires: §4.2.4), every reuse is validated first: the operator's stale-while-revalidate
  // then does not apply — otherwise "do not reuse" would turn into "reuse while refreshing".
  const operatorSwr = lifetime.ms === 0 ? 0 : p.staleWhileRevalidateMs;
  const swrMs = never ? 0 : explicitSwr ? d.staleWhileRevalidate! * 1000 : noStale ? 0 : operatorSwr;
  const sieMs = never ? 0 : explicitSie ? d.staleIfError! * 1000 : noStale ? 0 : p.staleIfErrorMs;
  return {
    store: true,
    freshness: {
      lifetime,
      initialAgeMs: correctedInitialAge({ ageHeaderSec: parseAge(res.headers['age']), dateMs, requestTimeMs: res.requestTimeMs, responseTimeMs: res.responseTimeMs }),
      swrMs,
      sieMs,
      keepMs: hasValidator ? p.keepMs : 0,
      noStaleServe: never || (noStale && !explicitSwr && !explicitSie),
      alwaysRevalidate: d.noCache,
    },
  };
}

/** Does the response's Vary name this (lowercase) request field? */
function varies(h: Headers, field: string): boolean {
  const v = parseVary(h['vary']);
  return v !== '*' && v.includes(field);
}

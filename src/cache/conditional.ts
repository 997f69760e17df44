// Client conditional requests answered from a stored object (RFC 9110 §13.1, precedence §13.2.2).
import type { CachedObject } from './object.ts';
import type { Headers } from './storable.ts';
import { parseHttpDate } from './freshness.ts';

export type ConditionalOutcome = 'full' | 'not-modified' | 'precondition-failed';

function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(',') : v;
}

/** Splits an entity-tag list (§8.8.3); `*` stays as is. */
export function parseEtagList(v: string): string[] {
  return v.match(/\*|(?:W\/)?"[^"]*"/g) ?? [];
}

function opaque(tag: string): string {
  return tag.startsWith('W/') ? tag.slice(2) : tag;
}

/** Weak comparison (§8.8.3.2): opaque tags equal, W/ prefix ignored. */
export function weakMatch(a: string, b: string): boolean {
  return opaque(a) === opaque(b);
}

/** Strong comparison: both strong and equal. */
export function strongMatch(a: string, b: string): boolean {
  return !a.startsWith('W/') && !b.startsWith('W/') && a === b;
}

export function evaluateConditionals(method: string, req: Headers, o: CachedObject): ConditionalOutcome {
  const etag = o.etag;
  const lastModified = parseHttpDate(o.lastModified);
  // §13.2.2 step 1: If-Match (strong comparison)
  const ifMatch = first(req['if-match']);
  if (ifMatch !== undefined) {
    const tags = parseEtagList(ifMatch);
    const ok = tags.includes('*') || (etag !== undefined && tags.some((t) => strongMatch(t, etag)));
    if (!ok) return 'precondition-failed';
  } else {
    // step 2: If-Unmodified-Since, only without If-Match
    const ius = parseHttpDate(req['if-unmodified-since']);
    if (ius !== undefined && lastModified !== undefined && lastModified > ius) return 'precondition-failed';
  }
  if (method !== 'GET' && method !== 'HEAD') return 'full';
  // step 3: If-None-Match (weak comparison) → 304 for GET/HEAD
  const inm = first(req['if-none-match']);
  if (inm !== undefined) {
    const tags = parseEtagList(inm);
    if (tags.includes('*') || (etag !== undefined && tags.some((t) => weakMatch(t, etag)))) return 'not-modified';
    return 'full';
  }
  // step 4: If-Modified-Since, only without If-None-Match; compared to Last-Modified (or Date as a fallback, §13.1.3)
  const ims = parseHttpDate(req['if-modified-since']);
  if (ims !== undefined) {
    const lm = lastModified ?? parseHttpDate(o.headers['date']);
    if (lm !== undefined && lm <= ims) return 'not-modified';
  }
  return 'full';
}

/** Fields a 304 carries (§15.4.5). */
export const NOT_MODIFIED_FIELDS = ['cache-control', 'content-location', 'date', 'etag', 'expires', 'vary', 'last-modified', 'cdn-cache-control'] as const;

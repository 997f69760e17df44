// Cache-Control parsing (RFC 9111 §5.2). Hand-written: the grammar is a comma list of token[=value],
// and we need the shared-cache view (s-maxage, private, qualified no-cache) that generic parsers flatten.

export type Directives = {
  maxAge?: number;
  sMaxage?: number;
  noStore: boolean;
  /** `no-cache` without field names: every reuse must be revalidated (§5.2.2.4). */
  noCache: boolean;
  /** `private` without field names: a shared cache must not store it (§5.2.2.7). */
  private: boolean;
  public: boolean;
  mustRevalidate: boolean;
  proxyRevalidate: boolean;
  staleWhileRevalidate?: number;
  staleIfError?: number;
  noTransform: boolean;
  immutable: boolean;
  /** §5.2.2.3: store only if the cache understands the status code (and then `no-store` may be ignored). */
  mustUnderstand: boolean;
  // Request-only directives (§5.2.1)
  maxStale?: number;
  minFresh?: number;
  onlyIfCached: boolean;
};

const EMPTY: Directives = Object.freeze({
  noStore: false,
  noCache: false,
  private: false,
  public: false,
  mustRevalidate: false,
  proxyRevalidate: false,
  noTransform: false,
  immutable: false,
  mustUnderstand: false,
  onlyIfCached: false,
});

/** Directives with a delta-seconds argument, and the Directives field each fills. */
const NUMERIC = {
  'max-age': 'maxAge',
  's-maxage': 'sMaxage',
  'stale-while-revalidate': 'staleWhileRevalidate',
  'stale-if-error': 'staleIfError',
  'max-stale': 'maxStale',
  'min-fresh': 'minFresh',
} as const satisfies Record<string, keyof Directives>;

/**
 * Parses one or more Cache-Control (or CDN-Cache-Control) field values. Unknown directives are ignored
 * (§5.2.3). Strict where §5.2 and §1.2.2 are: `max-age = 60` (whitespace around `=`), `max-age=60s` and
 * `max-age=-1` are invalid, and an invalid freshness value makes the response stale (§4.2.1 encourages
 * that). Both token and quoted-string arguments are accepted (§5.2: recipients ought to accept both).
 * Duplicates that disagree (§4.2.1 allows "the first" or "stale"): the safe reading — `max-age` and
 * `s-maxage` become 0 (stale), `min-fresh` the largest, the other windows the smallest.
 */
export function parseCacheControl(value: string | string[] | undefined): Directives {
  if (value === undefined || value === '') return EMPTY;
  const text = Array.isArray(value) ? value.join(',') : value;
  const d: Directives = { ...EMPTY };
  for (const part of splitList(text)) {
    const eq = part.indexOf('=');
    const rawName = (eq === -1 ? part : part.slice(0, eq)).trimStart();
    const name = rawName.trimEnd().toLowerCase();
    const rawArg = eq === -1 ? undefined : part.slice(eq + 1).trimEnd();
    // §5.2: `token [ "=" ( token / quoted-string ) ]` — no whitespace around "=".
    const wellFormed = rawName === rawName.trimEnd() && (rawArg === undefined || rawArg === rawArg.trimStart());
    if (name in NUMERIC) {
      const field = NUMERIC[name as keyof typeof NUMERIC];
      const n = name === 'max-stale' && rawArg === undefined ? Number.POSITIVE_INFINITY : wellFormed ? seconds(rawArg) : 0;
      d[field] = merge(name, d[field], n);
      continue;
    }
    switch (name) {
      case 'no-store':
        d.noStore = true;
        break;
      case 'no-cache':
        // A qualified no-cache (field names) only forbids reusing those fields without revalidation;
        // we don't strip fields, so treat it as unqualified: the safe reading (§5.2.2.4).
        d.noCache = true;
        break;
      case 'private':
        // Qualified private: the named fields are private. We don't strip fields, so a shared cache must not store it.
        d.private = true;
        break;
      case 'public':
        d.public = true;
        break;
      case 'must-revalidate':
        d.mustRevalidate = true;
        break;
      case 'proxy-revalidate':
        d.proxyRevalidate = true;
        break;
      case 'no-transform':
        d.noTransform = true;
        break;
      case 'immutable':
        d.immutable = true;
        break;
      case 'must-understand':
        d.mustUnderstand = true;
        break;
      case 'only-if-cached':
        d.onlyIfCached = true;
        break;
    }
  }
  return d;
}

/** A repeated numeric directive: equal values agree; differing ones take the safe reading (see above). */
function merge(name: string, previous: number | undefined, next: number): number {
  if (previous === undefined || previous === next) return next;
  if (name === 'max-age' || name === 's-maxage') return 0;
  if (name === 'min-fresh') return Math.max(previous, next);
  return Math.min(previous, next);
}

/** Splits a comma list, respecting quoted strings. */
function splitList(text: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '"') quoted = !quoted;
    if (c === ',' && !quoted) {
      if (cur.trim()) out.push(cur);
      cur = '';
    } else cur += c;
  }
  if (cur.trim()) out.push(cur);
  return out;
}

/**
 * Delta-seconds (§1.2.2), as a token or a quoted string (§5.2). Anything else — a missing value, a sign, a
 * suffix, a fraction — is invalid and read as 0: stale for freshness (§4.2.1), no window for the others.
 * Values past 2^31 are capped at 2^31 as §1.2.2 requires.
 */
function seconds(arg: string | undefined): number {
  if (arg === undefined) return 0;
  const v = arg.length >= 2 && arg.startsWith('"') && arg.endsWith('"') ? arg.slice(1, -1) : arg;
  if (!/^\d+$/.test(v)) return 0;
  const n = Number(v);
  return n > 2147483648 ? 2147483648 : n;
}

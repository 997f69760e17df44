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
  onlyIfCached: false,
});

/** Parses one or more Cache-Control field values. Unknown directives are ignored (§5.2.3). */
export function parseCacheControl(value: string | string[] | undefined): Directives {
  if (value === undefined || value === '') return EMPTY;
  const text = Array.isArray(value) ? value.join(',') : value;
  const d: Directives = { ...EMPTY };
  for (const part of splitList(text)) {
    const eq = part.indexOf('=');
    const name = (eq === -1 ? part : part.slice(0, eq)).trim().toLowerCase();
    const arg = eq === -1 ? undefined : unquote(part.slice(eq + 1).trim());
    switch (name) {
      case 'max-age':
        d.maxAge = seconds(arg, d.maxAge);
        break;
      case 's-maxage':
        d.sMaxage = seconds(arg, d.sMaxage);
        break;
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
      case 'stale-while-revalidate':
        d.staleWhileRevalidate = seconds(arg, d.staleWhileRevalidate);
        break;
      case 'stale-if-error':
        d.staleIfError = seconds(arg, d.staleIfError);
        break;
      case 'no-transform':
        d.noTransform = true;
        break;
      case 'immutable':
        d.immutable = true;
        break;
      case 'max-stale':
        d.maxStale = arg === undefined ? Number.POSITIVE_INFINITY : seconds(arg, d.maxStale);
        break;
      case 'min-fresh':
        d.minFresh = seconds(arg, d.minFresh);
        break;
      case 'only-if-cached':
        d.onlyIfCached = true;
        break;
    }
  }
  return d;
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

function unquote(s: string): string {
  return s.length >= 2 && s.startsWith('"') && s.endsWith('"') ? s.slice(1, -1) : s;
}

/**
 * Delta-seconds (§1.2.2). An invalid value makes the directive invalid; RFC 9111 §4.2.1 says a cache
 * SHOULD then treat max-age as stale (0). Duplicates: §4.2.1 recommends the first. Returns seconds.
 */
function seconds(arg: string | undefined, previous: number | undefined): number | undefined {
  if (previous !== undefined) return previous;
  if (arg === undefined || !/^\d+$/.test(arg)) return 0;
  const n = Number(arg);
  return n > 2147483648 ? 2147483648 : n;
}

// Freshness and age (RFC 9111 §4.2) for a shared cache, with CDN-Cache-Control (RFC 9213) and the
// stale extensions of RFC 5861.
import type { Directives } from './cache-control.ts';

/** Statuses that are heuristically cacheable (RFC 9110 §15.1). 206 is excluded: Lacquer stores only full objects. */
export const HEURISTIC_STATUSES: ReadonlySet<number> = new Set([200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501]);

export type FreshnessInput = {
  status: number;
  directives: Directives;
  /** True when the directives came from CDN-Cache-Control: Expires is then ignored (RFC 9213 §2.1). */
  targeted: boolean;
  dateMs: number | undefined;
  expiresMs: number | undefined;
  /** Expires was present but not a valid date: it means "already expired" (RFC 9111 §5.3). */
  expiresInvalid: boolean;
  lastModifiedMs: number | undefined;
  responseTimeMs: number;
};

export type FreshnessOptions = { defaultTtlMs: number; heuristicFraction: number; heuristicMaxMs: number };

export type Lifetime = { ms: number; source: 'cdn-max-age' | 's-maxage' | 'max-age' | 'expires' | 'heuristic' | 'default_ttl' | 'none' };

/** Freshness lifetime (RFC 9111 §4.2.1): s-maxage, then max-age, then Expires − Date, then heuristics (§4.2.2). */
export function freshnessLifetime(f: FreshnessInput, opts: FreshnessOptions): Lifetime {
  const d = f.directives;
  if (d.sMaxage !== undefined) return { ms: d.sMaxage * 1000, source: f.targeted ? 'cdn-max-age' : 's-maxage' };
  if (d.maxAge !== undefined) return { ms: d.maxAge * 1000, source: f.targeted ? 'cdn-max-age' : 'max-age' };
  if (!f.targeted) {
    if (f.expiresInvalid) return { ms: 0, source: 'expires' };
    if (f.expiresMs !== undefined) {
      const date = f.dateMs ?? f.responseTimeMs;
      return { ms: Math.max(0, f.expiresMs - date), source: 'expires' };
    }
  }
  // §4.2.2: heuristics only without explicit expiration, for heuristically cacheable statuses or `public`.
  const heuristicAllowed = HEURISTIC_STATUSES.has(f.status) || d.public;
  if (heuristicAllowed && f.lastModifiedMs !== undefined && opts.heuristicFraction > 0) {
    const date = f.dateMs ?? f.responseTimeMs;
    const age = Math.max(0, date - f.lastModifiedMs);
    return { ms: Math.min(opts.heuristicMaxMs, Math.floor(age * opts.heuristicFraction)), source: 'heuristic' };
  }
  if (heuristicAllowed && opts.defaultTtlMs > 0) return { ms: opts.defaultTtlMs, source: 'default_ttl' };
  return { ms: 0, source: 'none' };
}

export type AgeInput = { ageHeaderSec: number; dateMs: number | undefined; requestTimeMs: number; responseTimeMs: number };

/** corrected_initial_age of RFC 9111 §4.2.3, in ms; current age = this + (now − responseTime). */
export function correctedInitialAge(a: AgeInput): number {
  const apparentAge = a.dateMs === undefined ? 0 : Math.max(0, a.responseTimeMs - a.dateMs);
  const responseDelay = a.responseTimeMs - a.requestTimeMs;
  const correctedAgeValue = a.ageHeaderSec * 1000 + responseDelay;
  return Math.max(apparentAge, correctedAgeValue);
}

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const IMF_FIXDATE = /^[a-z]{3}, (\d{1,2}) ([a-z]{3}) (\d{4}) (\d{2}):(\d{2}):(\d{2}) gmt$/i;
const RFC850_DATE = /^[a-z]{6,9}, (\d{2})-([a-z]{3})-(\d{2}) (\d{2}):(\d{2}):(\d{2}) gmt$/i;
const ASCTIME_DATE = /^[a-z]{3} ([a-z]{3}) ( \d|\d{1,2}) (\d{2}):(\d{2}):(\d{2}) (\d{4})$/i;

/**
 * HTTP-date (RFC 9110 §5.6.7): IMF-fixdate, or the obsolete RFC 850 and asctime forms, always UTC.
 * Hand-written because Date.parse is far too lenient for §5.3: it reads `Expires: 0` as the year 2000 and
 * `Expires: 3600` (delta-seconds sent by mistake) as the year 3600 — fresh for centuries — where the
 * RFC says an invalid date means "already expired". Returns epoch ms, or undefined when invalid.
 */
export function parseHttpDate(v: string | string[] | undefined): number | undefined {
  if (v === undefined) return undefined;
  const s = (Array.isArray(v) ? v[0] : v)?.trim();
  if (!s) return undefined;
  let m = IMF_FIXDATE.exec(s);
  if (m) return utc(Number(m[3]), m[2]!, Number(m[1]), m[4]!, m[5]!, m[6]!);
  m = RFC850_DATE.exec(s);
  if (m) {
    // §5.6.7: a two-digit year more than 50 years in the future is the most recent past year with those digits.
    const thisYear = new Date().getUTCFullYear();
    let year = thisYear - (thisYear % 100) + Number(m[3]);
    if (year > thisYear + 50) year -= 100;
    return utc(year, m[2]!, Number(m[1]), m[4]!, m[5]!, m[6]!);
  }
  m = ASCTIME_DATE.exec(s);
  if (m) return utc(Number(m[6]), m[1]!, Number(m[2]!.trim()), m[3]!, m[4]!, m[5]!);
  return undefined;
}

function utc(year: number, month: string, day: number, h: string, mi: string, sec: string): number | undefined {
  const mon = MONTHS.indexOf(month.toLowerCase());
  const hh = Number(h);
  const mm = Number(mi);
  const ss = Number(sec);
  if (mon < 0 || day < 1 || hh > 23 || mm > 59 || ss > 60) return undefined;
  const t = Date.UTC(year, mon, day, hh, mm, Math.min(ss, 59));
  // Rejects 31 Feb and the like instead of rolling over into the next month.
  return new Date(t).getUTCDate() === day ? t : undefined;
}

/**
 * Age header value in seconds (§5.1): a non-negative integer (delta-seconds, capped at 2^31 as §1.2.2
 * says); anything else — a sign, a fraction, a list — is ignored. With several field lines, the first.
 */
export function parseAge(v: string | string[] | undefined): number {
  const s = (Array.isArray(v) ? v[0] : v)?.trim();
  return s !== undefined && /^\d+$/.test(s) ? Math.min(Number(s), 2147483648) : 0;
}

// Freshness lifetime (RFC 9111 §4.2.1, §4.2.2), age (§4.2.3) and HTTP-date parsing (RFC 9110 §5.6.7).
import { describe, expect, it } from 'vitest';
import { parseCacheControl } from './cache-control.ts';
import { correctedInitialAge, freshnessLifetime, parseAge, parseHttpDate, type FreshnessInput, type FreshnessOptions } from './freshness.ts';

const NOW = Date.UTC(2025, 0, 15, 12, 0, 0);
const OPTS: FreshnessOptions = { defaultTtlMs: 0, heuristicFraction: 0.1, heuristicMaxMs: 86_400_000 };

function input(over: Partial<FreshnessInput> & { cc?: string }): FreshnessInput {
  return {
    status: 200,
    directives: parseCacheControl(over.cc),
    targeted: false,
    dateMs: NOW,
    expiresMs: undefined,
    expiresInvalid: false,
    lastModifiedMs: undefined,
    responseTimeMs: NOW,
    ...over,
  };
}

describe('freshness lifetime (RFC 9111 §4.2.1)', () => {
  it('§4.2.1: s-maxage takes precedence over max-age and Expires', () => {
    const l = freshnessLifetime(input({ cc: 'max-age=10, s-maxage=30', expiresMs: NOW + 99_000 }), OPTS);
    expect(l).toEqual({ ms: 30_000, source: 's-maxage' });
  });

  it('§4.2.1: max-age takes precedence over Expires', () => {
    const l = freshnessLifetime(input({ cc: 'max-age=10', expiresMs: NOW + 99_000 }), OPTS);
    expect(l).toEqual({ ms: 10_000, source: 'max-age' });
  });

  it('§4.2.1: without max-age, the lifetime is Expires minus Date', () => {
    const l = freshnessLifetime(input({ dateMs: NOW - 5000, expiresMs: NOW + 20_000 }), OPTS);
    expect(l).toEqual({ ms: 25_000, source: 'expires' });
  });

  it('§4.2.1: Expires before Date gives a zero lifetime, never a negative one', () => {
    const l = freshnessLifetime(input({ expiresMs: NOW - 60_000 }), OPTS);
    expect(l).toEqual({ ms: 0, source: 'expires' });
  });

  it('§5.3: an invalid Expires means already expired, even with Last-Modified (no heuristics)', () => {
    const l = freshnessLifetime(input({ expiresInvalid: true, lastModifiedMs: NOW - 3_600_000 }), OPTS);
    expect(l).toEqual({ ms: 0, source: 'expires' });
  });

  it('§4.2.1: duplicate max-age that disagree mean stale (the safe choice); an invalid value means stale (0)', () => {
    expect(freshnessLifetime(input({ cc: 'max-age=5, max-age=500' }), OPTS).ms).toBe(0);
    expect(freshnessLifetime(input({ cc: 'max-age=5, max-age=5' }), OPTS).ms).toBe(5000);
    expect(freshnessLifetime(input({ cc: 'max-age = 5' }), OPTS).ms).toBe(0);
    expect(freshnessLifetime(input({ cc: 'max-age=ten' }), OPTS).ms).toBe(0);
    expect(freshnessLifetime(input({ cc: 'max-age="7"' }), OPTS).ms).toBe(7000);
  });

  it('RFC 9213 §2.1: targeted (CDN-Cache-Control) directives ignore Expires', () => {
    const l = freshnessLifetime(input({ targeted: true, expiresMs: NOW + 99_000, lastModifiedMs: NOW - 10_000_000 }), OPTS);
    expect(l.source).not.toBe('expires');
    expect(freshnessLifetime(input({ targeted: true, cc: 'max-age=42', expiresMs: NOW + 99_000 }), OPTS)).toEqual({ ms: 42_000, source: 'cdn-max-age' });
  });
});

describe('heuristic freshness (RFC 9111 §4.2.2)', () => {
  it('§4.2.2: a fraction of the Last-Modified age for a heuristically cacheable status', () => {
    const l = freshnessLifetime(input({ lastModifiedMs: NOW - 1000_000 }), OPTS);
    expect(l).toEqual({ ms: 100_000, source: 'heuristic' });
  });

  it('§4.2.2: heuristic freshness is capped by heuristic_max', () => {
    const l = freshnessLifetime(input({ lastModifiedMs: NOW - 365 * 86_400_000 }), { ...OPTS, heuristicMaxMs: 60_000 });
    expect(l).toEqual({ ms: 60_000, source: 'heuristic' });
  });

  it('§4.2.2: no heuristics for a status that is not heuristically cacheable (302), unless public', () => {
    expect(freshnessLifetime(input({ status: 302, lastModifiedMs: NOW - 1000_000 }), OPTS).source).toBe('none');
    expect(freshnessLifetime(input({ status: 302, cc: 'public', lastModifiedMs: NOW - 1000_000 }), OPTS).source).toBe('heuristic');
  });

  it('§4.2.2: no heuristics without Last-Modified; default_ttl 0 leaves no freshness', () => {
    expect(freshnessLifetime(input({}), OPTS)).toEqual({ ms: 0, source: 'none' });
  });

  it('§4.2.2: default_ttl > 0 gives freshness to a response that said nothing', () => {
    expect(freshnessLifetime(input({}), { ...OPTS, defaultTtlMs: 120_000 })).toEqual({ ms: 120_000, source: 'default_ttl' });
    expect(freshnessLifetime(input({ status: 302 }), { ...OPTS, defaultTtlMs: 120_000 }).source).toBe('none');
  });

  it('§4.2.2: heuristic_fraction 0 disables heuristics', () => {
    expect(freshnessLifetime(input({ lastModifiedMs: NOW - 1000_000 }), { ...OPTS, heuristicFraction: 0 }).source).toBe('none');
  });
});

describe('age (RFC 9111 §4.2.3)', () => {
  it('§4.2.3: corrected_initial_age adds the upstream Age to the response delay', () => {
    expect(correctedInitialAge({ ageHeaderSec: 100, dateMs: NOW, requestTimeMs: NOW, responseTimeMs: NOW + 400 })).toBe(100_400);
  });

  it('§4.2.3: apparent age (response_time − Date) wins when larger', () => {
    expect(correctedInitialAge({ ageHeaderSec: 2, dateMs: NOW - 30_000, requestTimeMs: NOW, responseTimeMs: NOW + 10 })).toBe(30_010);
  });

  it('§4.2.3: a Date in the future does not make the age negative', () => {
    expect(correctedInitialAge({ ageHeaderSec: 0, dateMs: NOW + 60_000, requestTimeMs: NOW, responseTimeMs: NOW })).toBe(0);
  });

  it('§5.1: Age is a non-negative integer; anything else is ignored', () => {
    expect(parseAge('15')).toBe(15);
    expect(parseAge(['7', '9'])).toBe(7);
    expect(parseAge('-3')).toBe(0);
    expect(parseAge('1.5')).toBe(0);
    expect(parseAge(undefined)).toBe(0);
    expect(parseAge('10, 20')).toBe(0);
    expect(parseAge('99999999999999')).toBe(2147483648);
  });
});

describe('HTTP-date (RFC 9110 §5.6.7)', () => {
  const T = Date.UTC(1994, 10, 6, 8, 49, 37);

  it('§5.6.7: accepts IMF-fixdate, the obsolete RFC 850 form and asctime, all as UTC', () => {
    expect(parseHttpDate('Sun, 06 Nov 1994 08:49:37 GMT')).toBe(T);
    expect(parseHttpDate('Sunday, 06-Nov-94 08:49:37 GMT')).toBe(T);
    expect(parseHttpDate('Sun Nov  6 08:49:37 1994')).toBe(T);
  });

  it('§5.6.7: an RFC 850 two-digit year more than 50 years ahead is in the past century', () => {
    const y = new Date().getUTCFullYear();
    const yy = String((y + 60) % 100).padStart(2, '0');
    expect(new Date(parseHttpDate(`Monday, 01-Jan-${yy} 00:00:00 GMT`)!).getUTCFullYear()).toBe(y + 60 - 100);
  });

  it('§5.3: "0", "-1" and delta-seconds in Expires are invalid dates (not year 2000, 2001 or 3600)', () => {
    for (const s of ['0', '-1', '3600', '2030', 'tomorrow', '', 'Sun, 06 Nov 1994 08:49:37', 'Sun, 32 Nov 1994 08:49:37 GMT']) {
      expect(parseHttpDate(s), s).toBeUndefined();
    }
  });
});

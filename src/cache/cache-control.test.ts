// Cache-Control parsing (RFC 9111 §5.2).
import { describe, expect, it } from 'vitest';
import { parseCacheControl } from './cache-control.ts';

describe('Cache-Control parsing (RFC 9111 §5.2)', () => {
  it('§5.2: directive names are case-insensitive; several field lines combine', () => {
    const d = parseCacheControl(['Public, MAX-AGE=30', 'S-MaxAge=60']);
    expect([d.public, d.maxAge, d.sMaxage]).toEqual([true, 30, 60]);
  });

  it('§5.2: a quoted argument may contain commas without splitting the list', () => {
    const d = parseCacheControl('private="set-cookie, x-user", max-age=5');
    expect([d.private, d.maxAge]).toEqual([true, 5]);
  });

  it('§5.2.3: unknown extension directives are ignored', () => {
    const d = parseCacheControl('community="UCI", max-age=9, foo');
    expect(d.maxAge).toBe(9);
  });

  it('§1.2.2: delta-seconds beyond 2^31 are capped; a negative or non-numeric value is invalid (stale)', () => {
    expect(parseCacheControl('max-age=99999999999').maxAge).toBe(2147483648);
    expect(parseCacheControl('max-age=-5').maxAge).toBe(0);
    expect(parseCacheControl('s-maxage=soon').sMaxage).toBe(0);
  });

  it('RFC 5861: stale-while-revalidate and stale-if-error are read as seconds', () => {
    const d = parseCacheControl('max-age=1, stale-while-revalidate=30, stale-if-error=86400');
    expect([d.staleWhileRevalidate, d.staleIfError]).toEqual([30, 86400]);
  });

  it('§5.2.1: request directives: max-stale without a value means any staleness', () => {
    const d = parseCacheControl('max-stale, min-fresh=10, only-if-cached');
    expect([d.maxStale, d.minFresh, d.onlyIfCached]).toEqual([Number.POSITIVE_INFINITY, 10, true]);
  });

  it('§5.2: whitespace around "=" makes max-age invalid, read as stale (§4.2.1)', () => {
    expect(parseCacheControl('max-age =60').maxAge).toBe(0);
    expect(parseCacheControl('max-age= 60').maxAge).toBe(0);
    expect(parseCacheControl(' max-age=60 , public').maxAge).toBe(60); // OWS around the list comma is fine
  });

  it('§1.2.2: a suffix or fraction makes delta-seconds invalid (stale), a quoted value is accepted (§5.2)', () => {
    expect(parseCacheControl('max-age=60s').maxAge).toBe(0);
    expect(parseCacheControl('max-age=1.5').maxAge).toBe(0);
    expect(parseCacheControl('max-age="60"').maxAge).toBe(60);
    expect(parseCacheControl('max-age').maxAge).toBe(0);
  });

  it('§4.2.1: duplicate max-age that agree keep the value; ones that disagree make the response stale', () => {
    expect(parseCacheControl('max-age=60, max-age=60').maxAge).toBe(60);
    expect(parseCacheControl(['max-age=60', 'max-age=3600']).maxAge).toBe(0);
    expect(parseCacheControl('s-maxage=10, s-maxage=20').sMaxage).toBe(0);
  });

  it('§4.2.1: other duplicate windows take the restrictive value', () => {
    const d = parseCacheControl('stale-if-error=600, stale-if-error=60, min-fresh=5, min-fresh=10, max-stale, max-stale=30');
    expect([d.staleIfError, d.minFresh, d.maxStale]).toEqual([60, 10, 30]);
  });
});

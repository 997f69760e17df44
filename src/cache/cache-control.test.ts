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
});

// Client conditionals answered from a stored object (RFC 9110 §13.1, precedence §13.2.2).
import { describe, expect, it } from 'vitest';
import { evaluateConditionals, parseEtagList, strongMatch, weakMatch } from './conditional.ts';
import type { CachedObject } from './object.ts';

const LM = 'Wed, 15 Jan 2025 12:00:00 GMT';
const BEFORE = 'Wed, 15 Jan 2025 11:00:00 GMT';
const AFTER = 'Wed, 15 Jan 2025 13:00:00 GMT';

function obj(etag: string | undefined, lastModified: string | undefined = LM): CachedObject {
  const o = { status: 200, etag, lastModified, headers: { date: AFTER } } satisfies Partial<CachedObject>;
  return o as unknown as CachedObject;
}

describe('entity-tag comparison (RFC 9110 §8.8.3.2)', () => {
  it('§8.8.3.2: weak comparison ignores W/, strong comparison needs both strong and equal', () => {
    expect(weakMatch('W/"a"', '"a"')).toBe(true);
    expect(weakMatch('"a"', '"b"')).toBe(false);
    expect(strongMatch('"a"', '"a"')).toBe(true);
    expect(strongMatch('W/"a"', '"a"')).toBe(false);
    expect(parseEtagList('"a", W/"b",  "c,d"')).toEqual(['"a"', 'W/"b"', '"c,d"']);
  });
});

describe('conditional precedence (RFC 9110 §13.2.2)', () => {
  it('§13.1.2: If-None-Match with a weakly matching tag → 304 for GET and HEAD', () => {
    expect(evaluateConditionals('GET', { 'if-none-match': 'W/"v1"' }, obj('"v1"'))).toBe('not-modified');
    expect(evaluateConditionals('HEAD', { 'if-none-match': '"x", "v1"' }, obj('W/"v1"'))).toBe('not-modified');
    expect(evaluateConditionals('GET', { 'if-none-match': '*' }, obj('"v1"'))).toBe('not-modified');
    expect(evaluateConditionals('GET', { 'if-none-match': '"v2"' }, obj('"v1"'))).toBe('full');
  });

  it('§13.1.3: If-Modified-Since at or after Last-Modified → 304; before → full', () => {
    expect(evaluateConditionals('GET', { 'if-modified-since': LM }, obj(undefined))).toBe('not-modified');
    expect(evaluateConditionals('GET', { 'if-modified-since': AFTER }, obj(undefined))).toBe('not-modified');
    expect(evaluateConditionals('GET', { 'if-modified-since': BEFORE }, obj(undefined))).toBe('full');
  });

  it('§13.1.3: an invalid If-Modified-Since date is ignored', () => {
    expect(evaluateConditionals('GET', { 'if-modified-since': '0' }, obj(undefined))).toBe('full');
  });

  it('§13.2.2 step 3: If-None-Match takes precedence over If-Modified-Since', () => {
    expect(evaluateConditionals('GET', { 'if-none-match': '"v2"', 'if-modified-since': AFTER }, obj('"v1"'))).toBe('full');
  });

  it('§13.1.1: If-Match without a strongly matching tag → 412; evaluated before If-None-Match', () => {
    expect(evaluateConditionals('GET', { 'if-match': '"v2"' }, obj('"v1"'))).toBe('precondition-failed');
    expect(evaluateConditionals('GET', { 'if-match': 'W/"v1"' }, obj('W/"v1"'))).toBe('precondition-failed');
    expect(evaluateConditionals('GET', { 'if-match': '"v2"', 'if-none-match': '"v1"' }, obj('"v1"'))).toBe('precondition-failed');
    expect(evaluateConditionals('GET', { 'if-match': '"v1"' }, obj('"v1"'))).toBe('full');
    expect(evaluateConditionals('GET', { 'if-match': '*' }, obj(undefined))).toBe('full');
  });

  it('§13.1.4: If-Unmodified-Since before Last-Modified → 412, ignored when If-Match is present', () => {
    expect(evaluateConditionals('GET', { 'if-unmodified-since': BEFORE }, obj('"v1"'))).toBe('precondition-failed');
    expect(evaluateConditionals('GET', { 'if-unmodified-since': AFTER }, obj('"v1"'))).toBe('full');
    expect(evaluateConditionals('GET', { 'if-unmodified-since': BEFORE, 'if-match': '"v1"' }, obj('"v1"'))).toBe('full');
  });
});

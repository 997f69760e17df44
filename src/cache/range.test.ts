// Range requests served from a stored full object (RFC 9110 §14, If-Range §13.1.5).
import { describe, expect, it } from 'vitest';
import type { CachedObject } from './object.ts';
import { evaluateRange } from './range.ts';

const LM = 'Wed, 15 Jan 2025 12:00:00 GMT';
const SENT = 'Wed, 15 Jan 2025 12:30:00 GMT';

function obj(size = 100, etag: string | undefined = '"v1"', status = 200): CachedObject {
  const o = { status, etag, lastModified: LM, body: Buffer.alloc(size, 'x'), headers: { date: SENT } } satisfies Partial<CachedObject>;
  return o as unknown as CachedObject;
}

describe('byte ranges (RFC 9110 §14)', () => {
  it('§14.1.2: first-last, open-ended and last beyond the end', () => {
    expect(evaluateRange('GET', { range: 'bytes=0-9' }, obj())).toEqual({ kind: 'partial', start: 0, end: 9 });
    expect(evaluateRange('GET', { range: 'bytes=90-' }, obj())).toEqual({ kind: 'partial', start: 90, end: 99 });
    expect(evaluateRange('GET', { range: 'bytes=95-500' }, obj())).toEqual({ kind: 'partial', start: 95, end: 99 });
  });

  it('§14.1.2: a suffix range is the last N bytes (the whole body when N is larger)', () => {
    expect(evaluateRange('GET', { range: 'bytes=-10' }, obj())).toEqual({ kind: 'partial', start: 90, end: 99 });
    expect(evaluateRange('GET', { range: 'bytes=-1000' }, obj())).toEqual({ kind: 'partial', start: 0, end: 99 });
  });

  it('§15.5.17: a range starting at or past the end, or bytes=-0, is unsatisfiable (416)', () => {
    expect(evaluateRange('GET', { range: 'bytes=100-' }, obj()).kind).toBe('unsatisfiable');
    expect(evaluateRange('GET', { range: 'bytes=-0' }, obj()).kind).toBe('unsatisfiable');
  });

  it('§14.2: an invalid, multiple or non-bytes range is ignored (full 200)', () => {
    expect(evaluateRange('GET', { range: 'bytes=9-2' }, obj()).kind).toBe('full');
    expect(evaluateRange('GET', { range: 'bytes=0-1,5-6' }, obj()).kind).toBe('full');
    expect(evaluateRange('GET', { range: 'items=0-1' }, obj()).kind).toBe('full');
  });

  it('§14.2: Range applies to GET of a 200 only', () => {
    expect(evaluateRange('POST', { range: 'bytes=0-9' }, obj()).kind).toBe('full');
    expect(evaluateRange('GET', { range: 'bytes=0-9' }, obj(100, '"v1"', 404)).kind).toBe('full');
  });

  it('§13.1.5: If-Range with the current strong ETag or Last-Modified date → partial; otherwise the full body', () => {
    expect(evaluateRange('GET', { range: 'bytes=0-9', 'if-range': '"v1"' }, obj()).kind).toBe('partial');
    expect(evaluateRange('GET', { range: 'bytes=0-9', 'if-range': LM }, obj()).kind).toBe('partial');
    expect(evaluateRange('GET', { range: 'bytes=0-9', 'if-range': '"v0"' }, obj()).kind).toBe('full');
    expect(evaluateRange('GET', { range: 'bytes=0-9', 'if-range': 'W/"v1"' }, obj(100, 'W/"v1"')).kind).toBe('full');
    expect(evaluateRange('GET', { range: 'bytes=0-9', 'if-range': 'Wed, 15 Jan 2025 11:00:00 GMT' }, obj()).kind).toBe('full');
  });

  it('§13.1.5/§8.8.2.2: If-Range with a Last-Modified that is not strong (sent within the same second) → full', () => {
    const o = obj();
    o.headers['date'] = LM;
    expect(evaluateRange('GET', { range: 'bytes=0-9', 'if-range': LM }, o).kind).toBe('full');
  });
});

// Range requests served from a stored full object (RFC 9110 §14). One byte range per request; a
// multi-range request is answered with the full object (a server MAY ignore Range, §14.2).
import type { CachedObject } from './object.ts';
import type { Headers } from './storable.ts';
import { strongMatch } from './conditional.ts';
import { parseHttpDate } from './freshness.ts';

export type RangeOutcome = { kind: 'full' } | { kind: 'partial'; start: number; end: number } | { kind: 'unsatisfiable' };

export function evaluateRange(method: string, req: Headers, o: CachedObject): RangeOutcome {
  const range = req['range'];
  if (method !== 'GET' || typeof range !== 'string' || o.status !== 200) return { kind: 'full' };
  // §13.1.5 If-Range: a strong validator that still matches, else the whole representation.
  const ifRange = req['if-range'];
  if (typeof ifRange === 'string') {
    if (ifRange.startsWith('"') || ifRange.startsWith('W/')) {
      if (o.etag === undefined || !strongMatch(ifRange, o.etag)) return { kind: 'full' };
    } else {
      const d = parseHttpDate(ifRange);
      const lm = parseHttpDate(o.lastModified);
      if (d === undefined || lm === undefined || d !== lm) return { kind: 'full' };
      // A date is only a strong validator when the response was sent at least a second after it (§8.8.2.2):
      // otherwise two versions within that second share it, and a range could splice them.
      const sent = parseHttpDate(o.headers['date']);
      if (sent === undefined || sent - lm < 1000) return { kind: 'full' };
    }
  }
  const m = /^bytes=\s*(\d*)-(\d*)\s*$/i.exec(range);
  if (!m || (m[1] === '' && m[2] === '')) return { kind: 'full' }; // multi-range or malformed: ignore
  const size = o.body.length;
  let start: number;
  let end: number;
  if (m[1] === '') {
    // suffix range: last N bytes
    const n = Number(m[2]);
    if (n === 0) return { kind: 'unsatisfiable' };
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
    if (m[2] !== '' && Number(m[2]) < start) return { kind: 'full' }; // invalid range: ignore (§14.1.1)
  }
  if (start >= size) return { kind: 'unsatisfiable' };
  return { kind: 'partial', start, end };
}

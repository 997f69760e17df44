// The one table of failure classes: every class has a row, and the views the rest of the proxy reads
// (plain words, hints, sentNothing, isBackendFault, passive health's verdict) all come from it.
import { describe, expect, it } from 'vitest';
import { ERROR_CLASSES, ERROR_TYPES, HINTS, isBackendFault, PLAIN, ProxyError, sentNothing } from './errors.ts';
import { verdictOf } from './upstream/health/outlier.ts';

describe('ERROR_CLASSES', () => {
  it('has one complete row per RFC 9209 class Lacquer reports', () => {
    expect(Object.keys(ERROR_CLASSES).sort()).toEqual([...ERROR_TYPES].sort());
    for (const t of ERROR_TYPES) {
      const row = ERROR_CLASSES[t];
      expect(row.plain.length, t).toBeGreaterThan(10);
      expect(row.hint.length, t).toBeGreaterThan(10);
      expect(PLAIN[t]).toBe(row.plain);
      expect(HINTS[t]).toBe(row.hint);
    }
  });

  it('sentNothing: a retry of these adds no origin load (connect never completed, or our own queue)', () => {
    const nothing = ERROR_TYPES.filter(sentNothing);
    expect(nothing).toEqual(expect.arrayContaining(['dns_error', 'dns_timeout', 'connection_refused', 'connection_timeout', 'tls_certificate_error', 'connection_limit_reached']));
    for (const t of ['connection_terminated', 'http_response_timeout', 'connection_read_timeout', 'http_response_incomplete', 'http_request_error'] as const) expect(sentNothing(t), t).toBe(false);
  });

  it('backend faults feed passive health; our own caps and the client side do not', () => {
    expect(isBackendFault('connection_refused')).toBe(true);
    expect(isBackendFault('http_response_timeout')).toBe(true);
    expect(isBackendFault('connection_limit_reached')).toBe(false);
    expect(isBackendFault('http_request_error')).toBe(false);
    const err = (type: (typeof ERROR_TYPES)[number]) => ({ type, source: 'upstream' });
    for (const t of ERROR_TYPES) expect(verdictOf({ error: err(t) }, []), t).toBe(isBackendFault(t) ? 'failure' : 'neutral');
  });

  it('ProxyError.nothingSent knows the class and the phase of one failure', () => {
    expect(new ProxyError({ type: 'connection_refused', phase: 'connect' }).nothingSent).toBe(true);
    expect(new ProxyError({ type: 'proxy_internal_error', phase: 'connect', source: 'internal' }).nothingSent).toBe(true); // EMFILE at connect
    expect(new ProxyError({ type: 'proxy_internal_error', phase: 'send', source: 'internal' }).nothingSent).toBe(false);
    expect(new ProxyError({ type: 'connection_terminated', phase: 'wait_headers' }).nothingSent).toBe(false);
  });
});

// The operator's hint for each failure seen in a log: the FAILURES.md hint (src/errors.ts HINTS) for an
// RFC 9209 class; for a bare 5xx status, what that status means coming from the proxy that logged it —
// Lacquer passes an origin's 5xx through (its own failures carry a class), while Varnish and nginx
// answer some 5xx themselves without saying why in the access log.
import { ERROR_TYPES, HINTS, type ErrorType } from '../errors.ts';
import type { LogFormat } from './record.ts';

const isErrorType = (s: string): s is ErrorType => (ERROR_TYPES as readonly string[]).includes(s);

function statusHint(status: number, format: LogFormat): string {
  switch (format) {
    case 'lacquer':
      return `The origin answered ${status} itself (Proxy-Status received-status): an application error, not a failed fetch — look at the origin's own logs; Lacquer serves stale-if-error where allowed.`;
    case 'varnishncsa':
      return status === 503
        ? 'Varnish answers 503 itself for any failed backend fetch ("Backend fetch failed"; `varnishlog -q FetchError` says why: refused, first byte timeout, ...), or the origin answered 503.'
        : `Usually the origin's own ${status} passed through (Varnish synthesises 503 for its own failures).`;
    case 'nginx':
      if (status === 502) return 'nginx answers 502 when the upstream refused, reset or sent invalid HTTP (its error log: "connect() failed (111)", "upstream prematurely closed connection", "upstream sent invalid header").';
      if (status === 504) return 'nginx answers 504 when the upstream did not answer in time (proxy_connect_timeout / proxy_read_timeout; error log "upstream timed out (110)").';
      if (status === 503) return 'nginx answers 503 for "no live upstreams" or a limit_req / limit_conn refusal, or the origin answered 503.';
      return `Usually the upstream's own ${status} passed through; look at the origin's logs.`;
  }
}

/** The hint for a failure key (`connection_refused`, `status 503`, …) given the formats it was seen in. */
export function failureHint(failure: string, formats: readonly LogFormat[]): string | undefined {
  if (isErrorType(failure)) return HINTS[failure];
  const m = /^status (\d{3})$/.exec(failure);
  if (!m) return undefined;
  const status = Number(m[1]);
  return formats.map((f) => (formats.length > 1 ? `[${f}] ` : '') + statusHint(status, f)).join(' ');
}

// The single retry decision (STYLE habit 7, FAILURES.md). Connection failures — nothing was sent — are
// retryable for any method, on another backend. Otherwise only an idempotent request (RFC 9110 §9.2.2)
// whose body can be sent again (none, or buffered), before any response byte went to the client, for a
// retryable class: the connection closed before the answer (`connection_terminated`), and when configured
// a first-byte timeout or a 502/503/504 from the origin. The keep-alive race — a reused socket closed under
// us with zero response bytes — is retried once on a fresh connection to the same backend (the backend is
// usually fine: it just closed an idle socket; if it really died, the fresh connect fails fast and the
// next retry goes elsewhere). Every retry is bounded by `retries.max` and the request's deadline; the
// pool's retry budget bounds only the retries that add origin load (issue 9 item 2): a retry after a
// failure that put no work on any origin (`addedNoOriginLoad`) is never refused by the budget.
// A failed half-open trial (the one request sent to a backend just back from ejection) is retried too,
// even when its class is otherwise not: the client should not pay for the proxy's test of a backend; and
// so is a first-byte timeout on a backend already failing in a row (a black hole), `on_timeout` or not.
import type { RetryPolicy } from '../config/schema.ts';
import type { ProxyError } from '../errors.ts';
import { isIdempotent } from './methods.ts';


export type RetryInput = {
  /** Why the attempt failed; undefined when the origin answered with `status`. */
  error: ProxyError | undefined;
  /** A complete status the origin answered with (for `on_status`). */
  status?: number;
  method: string;
  /** The request body can be sent again (none, or buffered). */
  replayable: boolean;
  /** Bytes of the response already went to the client. */
  responseStarted: boolean;
  /** Attempts made so far (1 after the first). */
  attempts: number;
  policy: RetryPolicy;
  /** Age of the request, ms. */
  elapsedMs: number;
  /** Whether a backend other than the ones already tried may take the request. */
  otherBackend: boolean;
  /** A stale-keepalive retry was already made for this request. */
  staleKeepaliveRetried: boolean;
  /** The pool's retry budget has room for one more retry. */
  budgetAvailable: boolean;
  /** The failed attempt was a backend's half-open trial. */
  trial?: boolean;
  /** The backend had failed before this attempt too (failures in a row), or is now out of rotation. */
  backendFailing?: boolean;
};

/** Why a retry is made, logged as `retry=<reason>` on the next attempt. */
export type RetryReason = 'connect' | 'stale-keepalive' | 'terminated' | 'timeout' | 'status' | 'trial';

/** Why not, for the log: a closed union so dashboards can count them. */
export type NoRetry = 'response-started' | 'client-error' | 'max' | 'deadline' | 'budget' | 'not-idempotent' | 'not-replayable' | 'not-retryable' | 'no-other-backend';

export type RetryDecision =
  | {
      retry: true;
      reason: RetryReason;
      /** stale-keepalive: same backend, new connection */ fresh: boolean;
      /** the failure added no origin load: the retry is outside the budget */ free: boolean;
    }
  | { retry: false; why: NoRetry };

/**
 * Did this failure put no work on an origin? DNS failure, refused or timed-out connect, TLS handshake,
 * our own queue — nothing was sent — and the keep-alive race: a reused socket the origin closed before
 * any response byte (it closed an idle connection; the request was not processed). A retry after such a
 * failure adds no load, so the retry budget does not apply (issue 9 item 2).
 * ONE place on purpose: at merge it reads the error-class table (errors.ts, "sent nothing?").
 */
export function addedNoOriginLoad(e: ProxyError): boolean {
  if (e.nothingSent) return true;
  return e.type === 'connection_terminated' && e.reused === true && !e.headersReceived && !(e.bytesReceived !== undefined && e.bytesReceived > 0);
}

export function decideRetry(i: RetryInput): RetryDecision {
  const no = (why: NoRetry): RetryDecision => ({ retry: false, why });
  if (i.responseStarted) return no('response-started');
  const e = i.error;
  if (e?.source === 'downstream') return no('client-error');
  if (i.attempts > i.policy.max) return no('max');
  if (i.elapsedMs >= i.policy.deadline) return no('deadline');
  const reason = reasonFor(i);
  if (typeof reason !== 'string') return reason;
  const free = e !== undefined && addedNoOriginLoad(e);
  if (!free && !i.budgetAvailable) return no('budget');
  return { retry: true, reason, fresh: reason === 'stale-keepalive', free };
}

function reasonFor(i: RetryInput): RetryReason | RetryDecision {
  const no = (why: NoRetry): RetryDecision => ({ retry: false, why });
  const e = i.error;
  // Nothing reached the origin (dns, connect, tls, its connection queue): safe for any method.
  if (e?.nothingSent) return i.otherBackend ? 'connect' : no('no-other-backend');
  if (!isIdempotent(i.method)) return no('not-idempotent');
  if (!i.replayable) return no('not-replayable');
  if (e) {
    if (e.type === 'connection_terminated') {
      if (e.reused === true && !i.staleKeepaliveRetried) return 'stale-keepalive';
      return i.otherBackend ? 'terminated' : no('no-other-backend');
    }
    // Without on_timeout a slow request is not sent twice — unless its backend is failing in a row (a black
    // hole: it accepts and never answers): then the timeout is the backend's, not the request's (issue 9).
    if (e.type === 'http_response_timeout' && e.phase === 'wait_headers' && (i.policy.on_timeout || i.backendFailing)) return i.otherBackend ? 'timeout' : no('no-other-backend');
    if (i.trial && e.source === 'upstream' && !e.headersReceived) return i.otherBackend ? 'trial' : no('no-other-backend');
    return no('not-retryable');
  }
  if (i.status !== undefined && i.policy.on_status.includes(i.status)) return i.otherBackend ? 'status' : no('no-other-backend');
  if (i.status !== undefined && i.trial) return i.otherBackend ? 'trial' : no('no-other-backend');
  return no('not-retryable');
}

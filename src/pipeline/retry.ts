// The single retry decision (STYLE habit 7). Connection failures — nothing was sent — are retryable for
// any method; otherwise only a replayable idempotent request, before any response byte went to the
// client. The keep-alive race (a reused socket closed under us with zero response bytes) is retried once.
import type { ProxyError } from '../errors.ts';

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

export type RetryInput = {
  error: ProxyError;
  method: string;
  /** The request body can be sent again (none, or buffered). */
  replayable: boolean;
  /** Bytes of the response already went to the client. */
  responseStarted: boolean;
  /** Attempts made so far (1 after the first). */
  attempts: number;
  maxRetries: number;
  /** Whether another backend than the failed one is available. */
  otherBackend: boolean;
  /** A stale-keepalive retry was already made for this request. */
  staleKeepaliveRetried: boolean;
};

/** Why a retry is allowed (logged as `retry=<reason>`), or null. */
export type RetryReason = 'connect' | 'stale-keepalive' | 'terminated' | null;

export function decideRetry(i: RetryInput): RetryReason {
  if (i.responseStarted || i.attempts > i.maxRetries) return null;
  const e = i.error;
  if (e.source === 'downstream') return null;
  if (e.nothingSent && i.otherBackend) return 'connect';
  const safe = IDEMPOTENT.has(i.method) && i.replayable;
  if (!safe) return null;
  if (e.type === 'connection_terminated' && e.reused && !i.staleKeepaliveRetried) return 'stale-keepalive';
  if (e.type === 'connection_terminated' && i.otherBackend) return 'terminated';
  return null;
}

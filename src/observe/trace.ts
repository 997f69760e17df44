// W3C Trace Context (https://www.w3.org/TR/trace-context/): continue the client's trace, or start one,
// so a request can be followed from the proxy's log line to the origin's. Lacquer is a participant: it
// keeps the trace-id, puts its own span id in `parent-id` towards the origin (§3.2.2.3), passes
// `tracestate` through unchanged, and logs the resulting `traceparent` with the request.
import type { IncomingHttpHeaders } from 'node:http';
import { randomFillSync } from 'node:crypto';
import type { Exchange } from '../server/exchange.ts';

/** version-format of §3.2.2: 2 hex version, 32 hex trace-id, 16 hex parent-id, 2 hex flags. */
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-|$)/;
const ZERO_TRACE = '0'.repeat(32);
const ZERO_SPAN = '0'.repeat(16);
/** §3.3.1.1: at most 32 list members; a header this long is not worth forwarding. */
const TRACESTATE_MAX = 512;

/** The incoming trace-id and flags, or undefined when the header is absent or invalid (§3.2.2). */
export function parseTraceparent(v: string | string[] | undefined): { traceId: string; flags: string } | undefined {
  // Several traceparent fields cannot be combined: treat as invalid (§3.2.1).
  if (typeof v !== 'string') return undefined;
  const m = TRACEPARENT.exec(v.trim());
  if (!m) return undefined;
  const [, version, traceId, parentId, flags, rest] = m as unknown as [string, string, string, string, string, string];
  if (version === 'ff' || traceId === ZERO_TRACE || parentId === ZERO_SPAN) return undefined;
  // Version 00 has exactly four fields; a later version may append more, which we drop (§3.2.4).
  if (version === '00' && rest === '-') return undefined;
  return { traceId, flags };
}

/** Random ids come from a pooled CSPRNG buffer, as crypto.randomUUID does: one randomBytes() call per
 *  request cost more than the rest of a cache hit's bookkeeping (bench/, BENCHMARKS.md). */
const POOL = Buffer.allocUnsafe(24 * 256);
/** The pool in hex, converted once per refill: a request takes a slice of it rather than a conversion of its own. */
let poolHex = '';
let poolAt = POOL.length;
function random48Hex(): string {
  if (poolAt === POOL.length) {
    randomFillSync(POOL);
    poolHex = POOL.toString('hex');
    poolAt = 0;
  }
  poolAt += 24;
  return poolHex.slice(2 * poolAt - 48, 2 * poolAt);
}

/**
 * The proxy's own `traceparent` for a request: the client's trace-id and flags with a new span id, or a new
 * trace (sampled, since every request is logged) when none valid arrived.
 */
export function beginTrace(headers: IncomingHttpHeaders): string {
  const incoming = parseTraceparent(headers.traceparent);
  const r = random48Hex();
  return incoming ? `00-${incoming.traceId}-${r.slice(0, 16)}-${incoming.flags}` : `00-${r.slice(0, 32)}-${r.slice(32, 48)}-01`;
}

/** The trace-id part of a traceparent. */
export function traceIdOf(traceparent: string | undefined): string | undefined {
  return traceparent?.slice(3, 35);
}

/** Headers for the origin request: our traceparent, and the client's tracestate when it belongs to the same trace. */
export function traceHeaders(ex: Exchange): { traceparent: string; tracestate?: string } {
  const traceparent = (ex.traceparent ??= beginTrace(ex.req.headers));
  const incoming = parseTraceparent(ex.req.headers.traceparent);
  if (!incoming || incoming.traceId !== traceIdOf(traceparent)) return { traceparent };
  const ts = ex.req.headers.tracestate;
  const tracestate = Array.isArray(ts) ? ts.join(',') : ts;
  return tracestate && tracestate.length <= TRACESTATE_MAX ? { traceparent, tracestate } : { traceparent };
}

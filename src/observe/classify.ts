// How a finished request is named in metrics, the dashboard and alerts: a few closed unions derived from
// the Exchange, so every view counts the same thing the same way and no label can take unbounded values.
import type { Exchange } from '../server/exchange.ts';

/** The `cache_status` label: what the cache did for this request. */
export const CACHE_LABELS = ['hit', 'miss', 'pass', 'stale', 'collapsed', 'synth', 'refused', 'maintenance'] as const;
export type CacheLabel = (typeof CACHE_LABELS)[number];

export function cacheLabel(ex: Exchange): CacheLabel {
  switch (ex.served) {
    case 'hit':
    case 'stale':
    case 'collapsed':
    case 'synth':
    case 'refused':
    case 'maintenance':
      return ex.served;
    case 'origin': {
      const fwd = ex.cache.fwd;
      return fwd === 'method' || fwd === 'request' || fwd === 'bypass' ? 'pass' : 'miss';
    }
  }
}

/** Answered without a fetch of its own (RFC 9211 hit, stale, or joined another request's fetch). */
export function fromCache(l: CacheLabel): boolean {
  return l === 'hit' || l === 'stale' || l === 'collapsed';
}

/** Took part in the hit ratio: a cacheable lookup. */
export function isLookup(l: CacheLabel): boolean {
  return l === 'hit' || l === 'stale' || l === 'collapsed' || l === 'miss';
}

/** `2xx`…`5xx`, or `aborted` when the response did not complete: the client left, or a mid-body origin
 *  failure made the proxy cut the connection (a 200 head followed by a truncated body is no success). */
export function statusClass(ex: Exchange): StatusClass {
  if (!ex.res.headersSent || !ex.res.writableFinished) return 'aborted';
  return CLASS_OF_HUNDREDS[Math.floor(ex.res.statusCode / 100)] ?? 'other';
}

export const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx', 'other', 'aborted'] as const;
export type StatusClass = (typeof STATUS_CLASSES)[number];
/** Constant strings: counting by status class builds no string per request. */
const CLASS_OF_HUNDREDS: readonly (StatusClass | undefined)[] = [undefined, '1xx', '2xx', '3xx', '4xx', '5xx'];

/** Why a 5xx reached the client: the RFC 9209 class, or `origin_5xx` when the origin itself answered 5xx. */
export function fiveXxClass(ex: Exchange): string | undefined {
  if (!ex.res.headersSent || ex.res.statusCode < 500) return undefined;
  if (ex.error && ex.served === 'synth') return ex.error.type;
  if (ex.served === 'origin' || ex.served === 'collapsed' || ex.served === 'stale') return 'origin_5xx';
  return ex.error?.type ?? 'proxy_internal_error';
}

/** The `reason` label of a stale serve, from the Cache-Status detail (RFC 5861 names). */
export function staleReason(ex: Exchange): 'stale-while-revalidate' | 'stale-if-error' | 'other' {
  const d = ex.cache.detail ?? '';
  if (d.startsWith('stale-while-revalidate')) return 'stale-while-revalidate';
  if (d.startsWith('stale-if-error')) return 'stale-if-error';
  return 'other';
}

/** Path without the query, capped in length: the key of the top-N lists (never a metric label). */
export function pathOf(target: string): string {
  const q = target.indexOf('?');
  const p = q === -1 ? target : target.slice(0, q);
  return p.length > 160 ? `${p.slice(0, 157)}...` : p;
}

// A stored response and the questions asked of it at lookup time.
import type { Freshness, Headers } from './storable.ts';

export type CachedObject = {
  primary: string;
  /** primary + vary values */
  key: string;
  status: number;
  statusMessage: string;
  /** Lowercased header map without hop-by-hop fields, for conditional evaluation and revalidation. */
  headers: Headers;
  /** Flat [name, value, ...] list for delivery: no hop-by-hop, no Age, no Content-Length (set from body). */
  rawHeaders: string[];
  /** The Via value delivered with it (upstream Via + ours), reused for 304/412/416 answers. */
  via: string;
  body: Buffer;
  /** Bytes charged to the memory bound: body + headers + bookkeeping. */
  size: number;
  requestTimeMs: number;
  responseTimeMs: number;
  /** Epoch ms at which the object stops being fresh. */
  expiresAt: number;
  freshness: Freshness;
  varyFields: readonly string[];
  etag: string | undefined;
  lastModified: string | undefined;
  /** Set by a soft purge or a soft ban: treat as expired from this moment. */
  invalidated: boolean;
  /** Epoch ms when this copy entered the store; bans apply to objects stored before them. */
  storedAt: number;
  /** Surrogate keys from the origin's Surrogate-Key / Cache-Tag headers, for purge by tag. */
  tags: readonly string[];
  /** Compressed forms of `body` made by Lacquer (pipeline/compress.ts), charged to `size`. */
  encoded?: EncodedForms;
  /** The head of its full answer, made on the first delivery under a configuration (pipeline/deliver.ts). */
  head?: { readonly config: object; readonly list: readonly string[] };
};

/**
 * What compression makes of an object, decided once per configuration (pipeline/compress.ts): whether its
 * body may be coded or decoded, and its coded forms (coding → body, or null when that coding does not make
 * this body smaller).
 */
export type EncodedForms = {
  readonly config: object;
  readonly kind: 'compress' | 'decode' | 'none';
  readonly forms: Map<string, Buffer | null>;
  started: boolean;
  bytes: number;
  toJSON(): undefined;
};

/**
 * The bytes of `chunks` (`size` in all) in one allocation of exactly that size, for a body to be stored.
 * Not `Buffer.concat` / `Buffer.from`: below 32 KiB they return a slice of Node's shared 64 KiB Buffer pool
 * (Buffer.poolSize in Node 24), so a small cached body would keep up to 64 KiB alive for as long as it stays
 * cached, memory that cache.memory does not see (issue 12 part 3).
 */
export function exactBody(chunks: readonly Uint8Array[], size: number): Buffer {
  const out = Buffer.allocUnsafeSlow(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** Where an object stands at a moment; a closed union (STYLE habit 3). */
export type ObjectState =
  /** May be served as is. */
  | 'fresh'
  /** Expired, may be served at once while one background fetch revalidates (stale-while-revalidate: the response's, or the operator's opt-in). */
  | 'stale-revalidate'
  /** Expired, may be served only if the fetch fails (stale-if-error: the response's, or cache.stale_if_error). */
  | 'stale-if-error'
  /** Expired past every stale window: kept only for its validators. */
  | 'keep';

export function objectState(o: CachedObject, now: number): ObjectState {
  const f = o.freshness;
  const expiresAt = o.expiresAt;
  if (now < expiresAt && !f.alwaysRevalidate) return 'fresh';
  if (f.noStaleServe) return 'keep';
  const past = now - expiresAt;
  if (past < f.swrMs) return 'stale-revalidate';
  if (past < f.sieMs) return 'stale-if-error';
  return 'keep';
}

/** Soft purge / soft ban: the object expires now, so the stale windows (stale-while-revalidate, stale-if-error) still apply. */
export function markStale(o: CachedObject, now: number): void {
  o.invalidated = true;
  if (o.expiresAt > now) o.expiresAt = now;
}

/** Current age in whole seconds (RFC 9111 §4.2.3), for the Age header. */
export function ageSeconds(o: CachedObject, now: number): number {
  return Math.max(0, Math.floor((o.freshness.initialAgeMs + (now - o.responseTimeMs)) / 1000));
}

/** Remaining freshness in seconds; negative when stale (RFC 9211 `ttl`). */
export function ttlSeconds(o: CachedObject, now: number): number {
  const ms = o.expiresAt - now;
  // Rounding 0.3 s past expiry would say `ttl=0`, which reads as fresh: a stale object is at least -1.
  return ms > 0 ? Math.round(ms / 1000) : Math.min(-1, Math.round(ms / 1000));
}

/** How long the store must keep the object at all, from now. */
export function retentionMs(o: CachedObject, now: number): number {
  const f = o.freshness;
  return Math.max(1, o.expiresAt - now + Math.max(f.swrMs, f.sieMs) + f.keepMs);
}

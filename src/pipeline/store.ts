// Store: copying a streamed origin body into a cache object (bounded by the largest storable size), and
// freshening a stored object from a 304 (RFC 9111 §4.3.4).
import { parseVary, variantKey } from '../cache/key.ts';
import { exactBody, type CachedObject } from '../cache/object.ts';
import { parseTags } from '../cache/invalidate.ts';
import { decideStorage, type Headers, type NotStorableReason, type StoragePolicy, type StoreDecision } from '../cache/storable.ts';
import type { ProxyContext } from './context.ts';
import { endToEnd, responseHeaderList } from './headers.ts';

/**
 * Recomputed on every delivery, so never stored; and the fields RFC 9111 §3.1 says MUST NOT be stored
 * (specific to a proxy on the way: Proxy-Authenticate, Proxy-Authentication-Info).
 */
const NOT_STORED = new Set(['age', 'content-length', 'x-request-id', 'cache-status', 'proxy-status', 'date-received', 'proxy-authenticate', 'proxy-authentication-info']);

/**
 * Collects body chunks up to a cap; past it the copy is dropped and `add` returns false.
 *
 * Memory (issue 12 part 3): undici hands over views into the socket's read buffers (up to 64 KiB each).
 * Keeping them until the end and concatenating kept every read buffer alive for the whole transfer; one
 * that survived a scavenge meanwhile moved to the old generation and waited there for a major GC. With a
 * Content-Length the body is one exact-size allocation made at the first chunk and each chunk is copied in
 * as it comes, so the read buffers die young. The stored body is always its own allocation of exactly its
 * size (cache/object.ts `exactBody`), never a view into a read buffer.
 */
export class BodyCollector {
  readonly maxBytes: number;
  /** The announced length (Content-Length) when known and within the cap. */
  readonly #expected: number | undefined;
  #body: Buffer | undefined;
  #chunks: Buffer[] = [];
  #size = 0;
  #overflow = false;

  constructor(maxBytes: number, contentLength?: number) {
    this.maxBytes = maxBytes;
    this.#expected = contentLength !== undefined && contentLength <= maxBytes ? contentLength : undefined;
  }

  add(chunk: Buffer): boolean {
    if (this.#overflow) return false;
    const at = this.#size;
    this.#size += chunk.length;
    if (this.#size > this.maxBytes) {
      this.#overflow = true;
      this.#chunks = [];
      this.#body = undefined;
      return false;
    }
    if (this.#expected !== undefined && this.#size <= this.#expected) {
      this.#body ??= Buffer.allocUnsafeSlow(this.#expected);
      chunk.copy(this.#body, at);
      return true;
    }
    if (this.#body) {
      // More than announced (undici refuses that, this is a safety net): go on as a list of chunks.
      this.#chunks.push(this.#body.subarray(0, at));
      this.#body = undefined;
    }
    this.#chunks.push(chunk);
    return true;
  }

  get size(): number {
    return this.#size;
  }

  /** The body, in one allocation of exactly `size` bytes. */
  body(): Buffer {
    const b = this.#body;
    if (b && this.#chunks.length === 0) return this.#size === b.length ? b : exactBody([b.subarray(0, this.#size)], this.#size);
    return exactBody(this.#chunks, this.#size);
  }
}

/** Content-Length as a byte count, or undefined when absent or not one plain number (RFC 9110 §8.6). */
export function contentLengthOf(headers: Headers): number | undefined {
  const v = headers['content-length'];
  return typeof v === 'string' && /^\d{1,15}$/.test(v) ? Number(v) : undefined;
}

/** `policy`: a route's TTL and stale-window overrides (pipeline/route.ts), else the context's. */
export function storageDecision(ctx: ProxyContext, reqHeaders: Headers, status: number, headers: Headers, requestTimeMs: number, responseTimeMs: number, policy: StoragePolicy = ctx.policy): StoreDecision {
  const d = decideStorage('GET', reqHeaders, { status, headers, requestTimeMs, responseTimeMs }, policy);
  if (d.store) {
    const len = Number(headers['content-length']);
    if (Number.isFinite(len) && len > ctx.maxObjectBytes) return { store: false, reason: 'too-large' };
  }
  return d;
}

export type ObjectInput = {
  primary: string;
  reqHeaders: Headers;
  status: number;
  statusMessage: string;
  headers: Headers;
  body: Buffer;
  decision: Extract<StoreDecision, { store: true }>;
  requestTimeMs: number;
  responseTimeMs: number;
};

export function buildObject(ctx: ProxyContext, i: ObjectInput): CachedObject {
  const vary = parseVary(i.headers['vary']);
  const fields = vary === '*' ? [] : vary;
  const rawHeaders = responseHeaderList(i.headers, ctx.via, NOT_STORED);
  const viaIndex = rawHeaders.lastIndexOf('via');
  const etag = i.headers['etag'];
  const lastModified = i.headers['last-modified'];
  const f = i.decision.freshness;
  let headerBytes = 0;
  for (const s of rawHeaders) headerBytes += s.length + 2;
  return {
    primary: i.primary,
    key: variantKey(i.primary, fields, i.reqHeaders),
    status: i.status,
    statusMessage: i.statusMessage,
    headers: i.headers,
    rawHeaders,
    via: rawHeaders[viaIndex + 1]!,
    body: i.body,
    // bookkeeping overhead per object, so a flood of tiny objects still respects the memory bound
    size: i.body.length + headerBytes + 512,
    requestTimeMs: i.requestTimeMs,
    responseTimeMs: i.responseTimeMs,
    expiresAt: i.responseTimeMs + f.lifetime.ms - f.initialAgeMs,
    freshness: f,
    varyFields: fields,
    etag: typeof etag === 'string' ? etag : undefined,
    lastModified: typeof lastModified === 'string' ? lastModified : undefined,
    invalidated: false,
    storedAt: Date.now(),
    tags: parseTags(i.headers, ctx.config.cache.tag_headers),
  };
}

/** What a 304 did to the stored object it answered (RFC 9111 §4.3.3, §4.3.4). */
export type Freshened =
  /** The object with the 304's fields and new freshness: store it and deliver it. */
  | { kind: 'fresh'; object: CachedObject }
  /** The body is still current but the 304's fields forbid storing it (e.g. no-store now): deliver it once, drop the stored copy. */
  | { kind: 'not-storable'; object: CachedObject; reason: NotStorableReason }
  /** The 304 names another representation (its ETag differs): it must not update the stored object. */
  | { kind: 'mismatch' };

/** Freshness of a copy delivered once and never stored. */
const DELIVER_ONCE: Extract<StoreDecision, { store: true }> = {
  store: true,
  freshness: { lifetime: { ms: 0, source: 'none' }, initialAgeMs: 0, swrMs: 0, sieMs: 0, keepMs: 0, noStaleServe: true, alwaysRevalidate: true },
};

/**
 * §4.3.4: a 304 freshens the stored object: its header fields replace the stored ones (except framing),
 * and freshness is recomputed.
 */
export function freshenObject(ctx: ProxyContext, o: CachedObject, reqHeaders: Headers, notModified: Headers, requestTimeMs: number, responseTimeMs: number, policy: StoragePolicy = ctx.policy): Freshened {
  const etag = notModified['etag'];
  if (typeof etag === 'string' && o.etag !== undefined && etag.replace(/^W\//, '') !== o.etag.replace(/^W\//, '')) return { kind: 'mismatch' };
  const merged: Headers = { ...o.headers };
  // Age and Date describe a response message, not the representation: the 304 is a new response, so the
  // stored ones must not survive it (an old `Age: 100` would leave the object born stale, revalidated on
  // every request). §4.2.3 then computes the age of the 304 itself.
  delete merged['age'];
  delete merged['date'];
  // §3.2: every field of the 304 replaces the stored one, except the hop-by-hop ones (§3.1), Content-Length, and
  // the fields the stored body depends on (its coding and range): the body is the stored one.
  for (const [k, v] of Object.entries(endToEnd(notModified))) {
    if (k === 'content-length' || k === 'content-encoding' || k === 'content-range') continue;
    merged[k] = v;
  }
  // cache.cookie_requests guards against storing a body built for one visitor's cookie; a 304 brings no body
  // (its validator says the stored one, shared already, is current), so this request's Cookie does not count.
  const sharedReq: Headers = { ...reqHeaders };
  delete sharedReq['cookie'];
  const decision = decideStorage('GET', sharedReq, { status: o.status, headers: merged, requestTimeMs, responseTimeMs }, policy);
  const object = buildObject(ctx, {
    primary: o.primary,
    reqHeaders,
    status: o.status,
    statusMessage: o.statusMessage,
    headers: merged,
    body: o.body,
    decision: decision.store ? decision : DELIVER_ONCE,
    requestTimeMs,
    responseTimeMs,
  });
  return decision.store ? { kind: 'fresh', object } : { kind: 'not-storable', object, reason: decision.reason };
}

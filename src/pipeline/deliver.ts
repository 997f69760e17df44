// Deliver: the response headers every answer carries (Age, Via, Cache-Status, X-Request-Id), and the
// three ways a body reaches the client: a stored object (with 304 / 206 / HEAD handled), or a streamed
// origin response.
import type { CachedObject } from '../cache/object.ts';
import { ageSeconds } from '../cache/object.ts';
import { evaluateConditionals, NOT_MODIFIED_FIELDS } from '../cache/conditional.ts';
import { evaluateRange } from '../cache/range.ts';
import type { Headers } from '../cache/storable.ts';
import type { CacheFacts, Exchange } from '../server/exchange.ts';
import type { ProxyContext } from './context.ts';
import { addVary, codeStored, codeStream, codingMayVary, sendCoded } from './compress.ts';

/** RFC 9211 Cache-Status member for this cache. */
export function cacheStatusValue(name: string, c: CacheFacts): string {
  let s = c.hit ? `${name}; hit` : `${name}; fwd=${c.fwd ?? 'miss'}`;
  if (c.fwdStatus !== undefined) s += `; fwd-status=${c.fwdStatus}`;
  if (c.ttl !== undefined) s += `; ttl=${c.ttl}`;
  if (c.stored) s += '; stored';
  if (c.collapsed) s += '; collapsed';
  if (c.detail) s += `; detail="${c.detail.replace(/["\\]/g, '')}"`;
  return s;
}

/** The reason phrase, for HTTP/1.x only: HTTP/2 has none (RFC 9113 §8.3.2). */
function reason(ex: Exchange, message: string): string | undefined {
  return message && ex.req.httpVersionMajor !== 2 ? message : undefined;
}

/**
 * The exchange's Cache-Status value, made once for the header and the access line (issue 12). Keyed on the
 * CacheFacts object: a step that changes the facts replaces the object (ex.cache = {...}), never edits it.
 */
export function cacheStatusOf(name: string, ex: Exchange): string {
  const memo = ex.cacheStatus;
  if (memo !== undefined && memo.facts === ex.cache && memo.name === name) return memo.value;
  const value = cacheStatusValue(name, ex.cache);
  ex.cacheStatus = { facts: ex.cache, name, value };
  return value;
}

function commonHeaders(ctx: ProxyContext, ex: Exchange, list: string[]): string[] {
  list.push('x-request-id', ex.id, 'cache-status', cacheStatusOf(ctx.name, ex));
  if (ex.proxyStatus) list.push('proxy-status', ex.proxyStatus);
  return list;
}

/**
 * Stored bodies larger than this are written in slices of this size with backpressure. One write of a large
 * body shows no progress until all of it is sent (on TLS not even byte counts move), so a slow client that
 * keeps reading would look stalled to timeouts.client_send; each finished slice is progress it can see.
 */
const SLICE_BYTES = 1 << 20;

function endWithBody(res: Exchange['res'], body: Buffer): void {
  if (body.length <= SLICE_BYTES) {
    res.end(body);
    return;
  }
  let off = 0;
  const pump = (): void => {
    while (!res.destroyed) {
      const chunk = body.subarray(off, Math.min(off + SLICE_BYTES, body.length));
      off += chunk.length;
      if (off >= body.length) return void res.end(chunk);
      if (!res.write(chunk)) return void res.once('drain', pump);
    }
  };
  pump();
}

const FULL = { kind: 'full' } as const;

/** Answers from a stored object: full, 304, 412, 206 or 416, HEAD without a body. */
export function deliverObject(ctx: ProxyContext, ex: Exchange, o: CachedObject, now: number): void {
  const { res } = ex;
  if (ex.clientGone || res.headersSent) return;
  const reqHeaders = ex.req.headers as Headers;
  const age = String(ageSeconds(o, now));
  // RFC 9110 §13.2.1: preconditions are ignored when the answer without them would not be a 2xx (a stored
  // 404 or 301 stays what it is).
  const conditional = reqHeaders['if-none-match'] || reqHeaders['if-modified-since'] || reqHeaders['if-match'] || reqHeaders['if-unmodified-since'];
  const cond = conditional && o.status >= 200 && o.status < 300 ? evaluateConditionals(ex.method, reqHeaders, o) : 'full';
  if (cond === 'not-modified' && o.status === 200) {
    // §15.4.5: a 304 carries the validators and caching fields a 200 would.
    const list: string[] = [];
    for (const f of NOT_MODIFIED_FIELDS) {
      const v = o.headers[f];
      if (v !== undefined) list.push(f, Array.isArray(v) ? v.join(', ') : v);
    }
    list.push('age', age, 'via', o.via);
    res.writeHead(304, commonHeaders(ctx, ex, list));
    res.end();
    return;
  }
  if (cond === 'precondition-failed') {
    res.writeHead(412, commonHeaders(ctx, ex, ['content-length', '0', 'age', age, 'via', o.via]));
    res.end();
    return;
  }
  const range = reqHeaders['range'] === undefined ? FULL : evaluateRange(ex.method === 'HEAD' ? 'GET' : ex.method, reqHeaders, o);
  if (range.kind === 'partial') {
    const list = o.rawHeaders.slice();
    list.push('age', age, 'content-range', `bytes ${range.start}-${range.end}/${o.body.length}`, 'content-length', String(range.end - range.start + 1));
    res.writeHead(206, commonHeaders(ctx, ex, list));
    if (ex.method !== 'HEAD') ex.bytesOut = range.end - range.start + 1;
    if (ex.method === 'HEAD') res.end();
    else endWithBody(res, o.body.subarray(range.start, range.end + 1));
    return;
  }
  if (range.kind === 'unsatisfiable') {
    res.writeHead(416, commonHeaders(ctx, ex, ['content-range', `bytes */${o.body.length}`, 'content-length', '0', 'age', age, 'via', o.via]));
    res.end();
    return;
  }
  // The object's head with this answer's own values in its last three slots (commonHeaders' fields).
  const full = fullHead(ctx, o).slice();
  const n = full.length;
  full[n - 5] = age;
  full[n - 3] = ex.id;
  full[n - 1] = cacheStatusOf(ctx.name, ex);
  if (ex.proxyStatus) full.push('proxy-status', ex.proxyStatus);
  const coded = codeStored(ctx, ex, o, full);
  if (coded) {
    res.writeHead(o.status, reason(ex, o.statusMessage), coded.list);
    return sendCoded(ex, coded);
  }
  res.writeHead(o.status, reason(ex, o.statusMessage), full);
  if (ex.method !== 'HEAD') ex.bytesOut = o.body.length;
  if (ex.method === 'HEAD') res.end();
  else endWithBody(res, o.body);
}

/**
 * The head of the object's full answer as stored — its fields, Vary for compression, Content-Length,
 * Accept-Ranges — built on its first delivery and kept with it (issue 12: the minimal proxy prepares its
 * headers once, when it stores). It ends with Age, X-Request-Id and Cache-Status, whose values are left
 * empty: a hit copies the list and fills in its own (one copy, no growth). Built again after a reload
 * changed the compression settings, which decide the Vary.
 */
function fullHead(ctx: ProxyContext, o: CachedObject): readonly string[] {
  const c = ctx.config.compression;
  if (o.head?.config === c) return o.head.list;
  const list = o.rawHeaders.slice();
  // What codeStored adds for a body that may be coded, whichever coding this client gets (RFC 9110 §12.5.5).
  if (codingMayVary(c, o)) addVary(list);
  if (o.status !== 204 && o.status !== 304) list.push('content-length', String(o.body.length));
  if (o.etag !== undefined && o.status === 200) list.push('accept-ranges', 'bytes');
  list.push('age', '', 'x-request-id', '', 'cache-status', '');
  o.head = new Head(c, list);
  return list;
}

class Head {
  readonly config: object;
  readonly list: readonly string[];
  constructor(config: object, list: readonly string[]) {
    this.config = config;
    this.list = list;
  }
  /** Not persisted with snapshots nor sent to other workers: remade on the first delivery there. */
  toJSON(): undefined {
    return undefined;
  }
}

/** Sends the head of a streamed origin response; the body follows through res.write. */
export function startOriginResponse(ctx: ProxyContext, ex: Exchange, status: number, statusMessage: string, list: string[]): void {
  ex.res.writeHead(status, reason(ex, statusMessage), commonHeaders(ctx, ex, codeStream(ctx, ex, status, list)));
}

/** A short fixed response made by the proxy itself (refusals at receive). */
export function deliverSimple(ctx: ProxyContext, ex: Exchange, status: number, text: string, extra: string[] = []): void {
  const body = `${text}\n`;
  ex.res.writeHead(
    status,
    commonHeaders(ctx, ex, ['content-type', 'text/plain; charset=utf-8', 'content-length', String(Buffer.byteLength(body)), 'cache-control', 'no-store', ...extra]),
  );
  ex.res.end(ex.method === 'HEAD' ? undefined : body);
}

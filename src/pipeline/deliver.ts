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
import { codeStored, codeStream, sendCoded } from './compress.ts';

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

function commonHeaders(ctx: ProxyContext, ex: Exchange, list: string[]): string[] {
  list.push('x-request-id', ex.id, 'cache-status', cacheStatusValue(ctx.name, ex.cache));
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
  const range = reqHeaders['range'] === undefined ? ({ kind: 'full' } as const) : evaluateRange(ex.method === 'HEAD' ? 'GET' : ex.method, reqHeaders, o);
  const list = o.rawHeaders.slice();
  list.push('age', age);
  if (range.kind === 'partial') {
    list.push('content-range', `bytes ${range.start}-${range.end}/${o.body.length}`, 'content-length', String(range.end - range.start + 1));
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
  const coded = codeStored(ctx, ex, o, list);
  if (coded) {
    res.writeHead(o.status, reason(ex, o.statusMessage), commonHeaders(ctx, ex, coded.list));
    return sendCoded(ex, coded);
  }
  if (o.status !== 204 && o.status !== 304) list.push('content-length', String(o.body.length));
  if (o.etag !== undefined && o.status === 200) list.push('accept-ranges', 'bytes');
  res.writeHead(o.status, reason(ex, o.statusMessage), commonHeaders(ctx, ex, list));
  if (ex.method !== 'HEAD') ex.bytesOut = o.body.length;
  if (ex.method === 'HEAD') res.end();
  else endWithBody(res, o.body);
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

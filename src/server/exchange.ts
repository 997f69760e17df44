// Per-request state: id, timings, cache status, attempts, the failure if any. Created by the listener,
// filled by the pipeline steps, read once by the access log when the response is done.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Writable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import type { Attempt, ProxyError } from '../errors.ts';
import type { Authority } from '../cache/key.ts';

/** RFC 9211 forward reasons. */
export type FwdReason = 'uri-miss' | 'vary-miss' | 'stale' | 'bypass' | 'method' | 'request' | 'miss';

/** What the client got, in one word: a closed union used by the log and the metrics. */
export type Served =
  | 'hit' // fresh from cache
  | 'stale' // stale from cache (stale-while-revalidate, max-stale, stale-if-error)
  | 'origin' // fetched now (miss, pass, revalidation)
  | 'collapsed' // waited on another request's fetch
  | 'synth' // explained error made by Lacquer
  | 'refused' // rejected at receive (4xx)
  | 'maintenance'; // the maintenance page

export type CacheFacts = {
  hit: boolean;
  fwd?: FwdReason;
  fwdStatus?: number;
  ttl?: number;
  stored?: boolean;
  collapsed?: boolean;
  detail?: string;
};

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * Request ids in UUID shape without a random draw per request: 80 random bits drawn once per process (so
 * workers and restarts never collide) and a 48-bit counter. crypto.randomUUID() plus the trace's own random
 * span cost about 0.3 µs of a cache hit (bench/hit-costs.ts); ids need to be unique, not unpredictable.
 */
const PREFIX = randomBytes(10).toString('hex');
// Version 4 and the RFC 9562 variant bits set, so the id has the shape of a random UUID (what tools and tests expect).
const ID_PREFIX = `${PREFIX.slice(0, 8)}-${PREFIX.slice(8, 12)}-4${PREFIX.slice(13, 16)}-${((parseInt(PREFIX[16]!, 16) & 3) | 8).toString(16)}${PREFIX.slice(17, 20)}-`;
let counter = 0;
function nextId(): string {
  counter = (counter + 1) % 0x1000000000000;
  return ID_PREFIX + counter.toString(16).padStart(12, '0');
}

export class Exchange {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly id: string;
  readonly startedAt = Date.now();
  readonly start = performance.now();
  method: string;
  /** path and query (origin-form) */
  target: string;
  host: string;
  /** `host` parsed, once receive() accepted it (the cache key is made from it). */
  authority: Authority | undefined;
  served: Served = 'origin';
  /** Replaced, never edited in place, when the facts change (the Cache-Status value is kept per object: deliver.ts cacheStatusOf). */
  cache: CacheFacts = { hit: false };
  /** The Cache-Status value made from `cache`, shared by the header and the access line. */
  cacheStatus: { facts: CacheFacts; name: string; value: string } | undefined;
  attempts: Attempt[] = [];
  /** Why the failed last attempt was not retried (pipeline/retry.ts NoRetry), for the log and metrics. */
  retryRefused: string | undefined;
  error: ProxyError | undefined;
  /** Backend that answered (or failed last). */
  backend: string | undefined;
  /** How stale the served object was, ms past expiry. */
  staleMs: number | undefined;
  ttfbMs: number | undefined;
  proxyStatus: string | undefined;
  /** Set when the client connection closed before the response finished. */
  clientGone = false;
  /** The limit that made Lacquer disconnect a client that stopped reading, e.g. `timeouts.client_send=60000ms`. */
  clientTimeout: string | undefined;
  traceparent: string | undefined;
  /** Headers of the origin response that was passed through (for §4.4 invalidation). */
  originHeaders: Record<string, string | string[] | undefined> | undefined;

  /** Body bytes sent to the client. */
  bytesOut = 0;
  /** The client's address (from a PROXY protocol header when the listener expects one). */
  readonly client: string | undefined;
  /** `HTTP/1.1`, `HTTP/2.0`: how the client spoke (access log). */
  readonly protocol: string;
  /** The client's own Accept-Encoding (the request's header is normalised for cache and origin: pipeline/compress.ts). */
  acceptEncoding: string | undefined;
  /** Where a streamed origin body is written: the response, or a compressor in front of it. */
  sink: Writable;
  /** Set when the request body went over limits.request_body_size. */
  bodyTooLarge = false;
  /** Set when the request body could not be parsed (a broken chunk) or ended early: answered 400. */
  bodyMalformed = false;
  #goneListeners: (() => void)[] | undefined;
  #endedAt: number | undefined;

  constructor(req: IncomingMessage, res: ServerResponse) {
    this.req = req;
    this.res = res;
    const incoming = req.headers['x-request-id'];
    this.id = typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : nextId();
    this.method = req.method ?? 'GET';
    this.target = req.url ?? '/';
    this.host = req.headers.host ?? '';
    this.acceptEncoding = req.headers['accept-encoding'];
    // Read now: an HTTP/2 stream's socket is unreachable once its session is gone (the log is written later).
    this.client = req.socket?.remoteAddress;
    this.protocol = req.httpVersion === '1.1' ? 'HTTP/1.1' : `HTTP/${req.httpVersion}`;
    this.sink = res;
  }

  /** Runs `cb` once if the client leaves before its response is finished; returns an unsubscribe. */
  onGone(cb: () => void): () => void {
    if (this.clientGone) {
      queueMicrotask(cb);
      return () => undefined;
    }
    (this.#goneListeners ??= []).push(cb);
    return () => {
      const l = this.#goneListeners;
      const i = l ? l.indexOf(cb) : -1;
      if (i >= 0) l!.splice(i, 1);
    };
  }

  /** Called by the listener when the connection closed before the response finished. */
  markGone(): void {
    if (this.clientGone) return;
    this.clientGone = true;
    const l = this.#goneListeners;
    this.#goneListeners = undefined;
    if (l) for (const cb of l) cb();
  }

  /** Called by the listener when the response closed: the exchange's duration stops here, even if the
   *  pipeline carries on (e.g. finishing a download for the cache after the client left). */
  markEnded(): void {
    this.#endedAt ??= performance.now();
  }

  elapsedMs(): number {
    return (this.#endedAt ?? performance.now()) - this.start;
  }
}

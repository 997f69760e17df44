// One origin attempt over undici's dispatch API: the body is pushed through a handler chunk by chunk
// (never collected here), with pause/resume for backpressure. The connect timeout is undici's; first_byte
// and between_bytes are native timers here that abort the request (and its socket) when they trip:
// undici's own headers/body timeouts run on a ~0.5 s tick, so a 300 ms limit would fire up to a second
// late. undici's stay configured (upstream/backend.ts) as a backstop.
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { classifyFetchError, type ProxyError } from '../errors.ts';
import type { Backend } from '../upstream/backend.ts';
import { onSocketChosen } from '../upstream/socket-reuse.ts';
// Drops unsolicited 100 Continue heads undici would treat as a broken connection (issue 10 item 3).
import '../upstream/interim-filter.ts';
import type { Headers } from '../cache/storable.ts';

export type FetchRequest = {
  method: string;
  path: string;
  /** Flat [name, value, ...] list, hop-by-hop already removed. */
  headers: string[];
  body: Readable | Buffer | null;
  /** limits.response_header_size (enforced by the backend's undici pool), for the failure report. */
  responseHeaderSize?: number;
};

export type FetchControl = { pause(): void; resume(): void; abort(): void };

/** Receives one attempt's outcome. Exactly one of onEnd / onError ends it. */
export interface FetchSink {
  /**
   * An interim (1xx) response before the final one (RFC 9110 §15.2), e.g. 103 Early Hints. Its headers
   * belong to it alone: the final response's headers arrive in onHeaders. Never 101 (no upgrades are
   * forwarded) nor 100 (an unsolicited 100 Continue says nothing the client needs: consumed here).
   */
  onInterim?(status: number, headers: Headers, statusMessage: string): void;
  /** The request is being written to a connected socket (connecting is over). */
  onStart?(): void;
  onHeaders(status: number, headers: Headers, statusMessage: string, control: FetchControl): void;
  onData(chunk: Buffer): void;
  onEnd(): void;
  onError(err: ProxyError): void;
}

export type FetchHandle = {
  /** Stops the attempt (client left and nobody else needs the body). Reports nothing further. */
  abort(): void;
  readonly startedAt: number;
  ttfbMs(): number | undefined;
  bytesReceived(): number;
};

/** Per-attempt choices of the forward loop (the pools issue). */
export type FetchOptions = {
  /** Use a new connection (the retry of the keep-alive race), not a pooled keep-alive socket. */
  fresh?: boolean;
  /** The route's overrides of first_byte / between_bytes, ms. */
  timeouts?: { first_byte?: number; between_bytes?: number };
};

export function fetchOnce(backend: Backend, req: FetchRequest, sink: FetchSink, opts: FetchOptions = {}): FetchHandle {
  const startedAt = performance.now();
  const timeouts = opts.timeouts ? { ...backend.timeouts, ...opts.timeouts } : backend.timeouts;
  let controller: Dispatcher.DispatchController | undefined;
  let aborted = false;
  let done = false;
  let headersAt: number | undefined;
  let received = 0;
  let requestSent = req.body === null || Buffer.isBuffer(req.body);
  let started = false;
  /** The socket had carried an earlier request (the keep-alive race is possible); undefined until written. */
  let reused: boolean | undefined;
  let paused = false;
  let timer: NodeJS.Timeout | undefined;
  const { first_byte: firstByteMs, between_bytes: betweenBytesMs } = timeouts;

  /** Arms the one running limit; tripping it aborts the request with undici's code for that limit. */
  const arm = (ms: number, code: 'UND_ERR_HEADERS_TIMEOUT' | 'UND_ERR_BODY_TIMEOUT') => {
    clearTimeout(timer);
    timer = undefined;
    if (!(ms > 0) || done || aborted) return; // 0 = no limit
    timer = setTimeout(() => {
      timer = undefined; // tripped: a late chunk must not re-arm it
      controller?.abort(Object.assign(new Error(`${code === 'UND_ERR_HEADERS_TIMEOUT' ? 'first_byte' : 'between_bytes'} timeout`), { code }));
    }, ms);
  };
  const disarm = () => {
    clearTimeout(timer);
    timer = undefined;
  };
  // Like undici's headers timeout, first_byte counts from the moment the whole request was handed to the
  // socket: a slow client upload is not the origin being slow.
  const armFirstByte = () => {
    if (started && requestSent && headersAt === undefined) arm(firstByteMs, 'UND_ERR_HEADERS_TIMEOUT');
  };
  /** The client's request body failed (over the size limit, or the client stopped sending): its fault, not the origin's. */
  let bodyFailed = false;
  if (req.body && !Buffer.isBuffer(req.body)) {
    req.body.once('end', () => {
      requestSent = true;
      armFirstByte();
    });
    req.body.once('error', () => (bodyFailed = true));
  }

  const control: FetchControl = {
    // While the client is slow to read, the origin is not stalled: between_bytes waits with the transfer.
    pause: () => {
      paused = true;
      disarm();
      controller?.pause();
    },
    resume: () => {
      if (!paused) return;
      paused = false;
      arm(betweenBytesMs, 'UND_ERR_BODY_TIMEOUT');
      controller?.resume();
    },
    abort: () => handle.abort(),
  };

  const handler: Dispatcher.DispatchHandler = {
    onRequestStart(ctl) {
      controller = ctl;
      onSocketChosen((r) => (reused = r));
      started = true;
      if (aborted) ctl.abort(new Error('aborted before start'));
      else {
        armFirstByte();
        sink.onStart?.();
      }
    },
    onResponseStart(_ctl, statusCode, headers, statusMessage) {
      if (done || aborted) return;
      if (statusCode < 200) {
        if (statusCode !== 100 && statusCode !== 101) sink.onInterim?.(statusCode, headers as Headers, statusMessage ?? '');
        return;
      }
      headersAt = performance.now();
      arm(betweenBytesMs, 'UND_ERR_BODY_TIMEOUT');
      sink.onHeaders(statusCode, headers as Headers, statusMessage ?? '', control);
    },
    onResponseData(_ctl, chunk) {
      if (done || aborted) return;
      received += chunk.length;
      if (timer) timer.refresh();
      sink.onData(chunk);
    },
    onResponseEnd() {
      disarm();
      if (done || aborted) return;
      done = true;
      backend.inflight--;
      sink.onEnd();
    },
    onResponseError(_ctl, err) {
      disarm();
      if (done) return;
      done = true;
      backend.inflight--;
      if (aborted) return;
      const error = classifyFetchError(err, {
        backend: backend.name,
        address: new URL(backend.origin).host,
        timeouts,
        elapsedMs: performance.now() - startedAt,
        headersReceived: headersAt !== undefined,
        bytesReceived: received,
        requestSent,
        reused,
        bodyFailed,
        responseHeaderSize: req.responseHeaderSize,
      });
      // A client's failed upload says nothing about the backend's health.
      if (error.source !== 'downstream') backend.counters.failures++;
      sink.onError(error);
    },
  };

  const handle: FetchHandle = {
    abort() {
      if (done || aborted) return;
      aborted = true;
      disarm();
      controller?.abort(new Error('client went away'));
    },
    startedAt,
    ttfbMs: () => (headersAt === undefined ? undefined : headersAt - startedAt),
    bytesReceived: () => received,
  };

  backend.inflight++;
  backend.counters.requests++;
  // undici validates the request inside dispatch() and reports what it rejects (a second Host, a header
  // value it refuses) through onResponseError synchronously, before dispatch() returns; a dispatcher may
  // also throw. Either way the failure goes through the one error path, so the attempt settles once and
  // `inflight` is given back (issue 9: a swallowed synchronous error left a request hanging forever).
  try {
    backend.dispatcherFor(opts.fresh === true).dispatch(
      {
        origin: backend.origin,
        path: req.path,
        method: req.method,
        headers: req.headers,
        body: req.body,
        // GET/HEAD without a body may be sent on a reused socket; the retry decision is ours, not undici's.
        idempotent: false,
        blocking: true,
        // undici's backstop timeouts follow a route's longer limits too.
        ...(opts.timeouts ? { headersTimeout: timeouts.first_byte, bodyTimeout: timeouts.between_bytes } : {}),
      },
      handler,
    );
  } catch (err) {
    handler.onResponseError?.(controller as Dispatcher.DispatchController, err as Error);
  }
  return handle;
}

// One origin attempt over undici's dispatch API: the body is pushed through a handler chunk by chunk
// (never collected here), with pause/resume for backpressure. The three timeouts are undici's
// connect / headers / body timeouts, each of which aborts the socket work it bounds.
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { classifyFetchError, type ProxyError } from '../errors.ts';
import type { Backend } from '../upstream/backend.ts';
import type { Headers } from '../cache/storable.ts';

export type FetchRequest = {
  method: string;
  path: string;
  /** Flat [name, value, ...] list, hop-by-hop already removed. */
  headers: string[];
  body: Readable | Buffer | null;
};

export type FetchControl = { pause(): void; resume(): void; abort(): void };

/** Receives one attempt's outcome. Exactly one of onEnd / onError ends it. */
export interface FetchSink {
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

export function fetchOnce(backend: Backend, req: FetchRequest, sink: FetchSink): FetchHandle {
  const startedAt = performance.now();
  let controller: Dispatcher.DispatchController | undefined;
  let aborted = false;
  let done = false;
  let headersAt: number | undefined;
  let received = 0;
  let requestSent = req.body === null || Buffer.isBuffer(req.body);
  if (req.body && !Buffer.isBuffer(req.body)) req.body.once('end', () => (requestSent = true));

  const control: FetchControl = {
    pause: () => controller?.pause(),
    resume: () => controller?.resume(),
    abort: () => handle.abort(),
  };

  const handler: Dispatcher.DispatchHandler = {
    onRequestStart(ctl) {
      controller = ctl;
      if (aborted) ctl.abort(new Error('aborted before start'));
    },
    onResponseStart(_ctl, statusCode, headers, statusMessage) {
      if (statusCode < 200 || done || aborted) return; // 1xx interim responses are not forwarded
      headersAt = performance.now();
      sink.onHeaders(statusCode, headers as Headers, statusMessage ?? '', control);
    },
    onResponseData(_ctl, chunk) {
      if (done || aborted) return;
      received += chunk.length;
      sink.onData(chunk);
    },
    onResponseEnd() {
      if (done || aborted) return;
      done = true;
      backend.inflight--;
      sink.onEnd();
    },
    onResponseError(_ctl, err) {
      if (done) return;
      done = true;
      backend.inflight--;
      if (aborted) return;
      backend.counters.failures++;
      sink.onError(
        classifyFetchError(err, {
          backend: backend.name,
          address: backend.origin,
          timeouts: backend.timeouts,
          elapsedMs: performance.now() - startedAt,
          headersReceived: headersAt !== undefined,
          bytesReceived: received,
          requestSent,
        }),
      );
    },
  };

  const handle: FetchHandle = {
    abort() {
      if (done || aborted) return;
      aborted = true;
      controller?.abort(new Error('client went away'));
    },
    startedAt,
    ttfbMs: () => (headersAt === undefined ? undefined : headersAt - startedAt),
    bytesReceived: () => received,
  };

  backend.inflight++;
  backend.counters.requests++;
  backend.dispatcher.dispatch(
    {
      origin: backend.origin,
      path: req.path,
      method: req.method,
      headers: req.headers,
      body: req.body,
      // GET/HEAD without a body may be sent on a reused socket; the retry decision is ours, not undici's.
      idempotent: false,
      blocking: true,
    },
    handler,
  );
  return handle;
}

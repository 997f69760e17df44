// The client-facing HTTP/1.1 listener: limits, request bodies, the access log line, graceful shutdown.
import { createServer, ServerResponse, type IncomingMessage, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import type { ProxyContext } from '../pipeline/context.ts';
import { cacheStatusValue } from '../pipeline/deliver.ts';
import { ALLOW } from '../pipeline/receive.ts';
import { handle } from '../pipeline/steps.ts';
import { Exchange } from './exchange.ts';
import { beginTrace } from '../observe/trace.ts';

export type Listener = {
  server: Server;
  /** The bound address, e.g. `127.0.0.1:6081`. */
  address: string;
  port: number;
  /** Requests being handled now. */
  inflight(): number;
  /** Stops accepting, lets in-flight requests finish within `drainMs`, then closes every connection. */
  close(drainMs: number): Promise<void>;
};

export function splitHostPort(listen: string): { host: string; port: number } {
  const i = listen.lastIndexOf(':');
  return { host: listen.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(listen.slice(i + 1)) };
}

/** Counts request body bytes and fails the stream past the limit (for bodies without Content-Length). */
class BodyLimit extends Transform {
  #seen = 0;
  readonly #max: number;
  readonly #ex: Exchange;
  constructor(max: number, ex: Exchange) {
    super();
    this.#max = max;
    this.#ex = ex;
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.#seen += chunk.length;
    if (this.#seen > this.#max) {
      this.#ex.bodyTooLarge = true;
      cb(Object.assign(new Error('request body too large'), { code: 'LACQUER_BODY_TOO_LARGE' }));
      return;
    }
    cb(null, chunk);
  }
}

function requestBody(req: IncomingMessage, ex: Exchange, max: number): Readable | null {
  const len = req.headers['content-length'];
  const chunked = req.headers['transfer-encoding'] !== undefined;
  if (!chunked && (len === undefined || len === '0')) return null;
  if (!chunked) return req; // length already checked against the limit at receive
  const limited = new BodyLimit(max, ex);
  req.pipe(limited);
  req.on('error', (e) => limited.destroy(e));
  return limited;
}

/** Called once per request when its response is finished or aborted, after the access log line (metrics). */
export type OnRequestDone = (ex: Exchange) => void;

/** Longest wait, after the response closed, for the pipeline to settle before the access line is written. */
const LOG_WAIT_MS = 250;
/** How often lines past LOG_WAIT_MS are looked for: one shared timer, not one per request. */
const LOG_SWEEP_MS = 25;

/** reusePort: bind with SO_REUSEPORT in this process (a worker of `workers: N`, `workers_balance: reuseport`). */
export function startListener(getContext: () => ProxyContext, listen: string, onDone?: OnRequestDone, o: { reusePort?: boolean } = {}): Promise<Listener> {
  const cfg = getContext().config;
  let inflight = 0;
  let closing = false;
  /** Responses not yet closed, to mark them `Connection: close` when the drain starts. */
  const live = new Set<ServerResponse>();
  /**
   * Access lines of responses that closed before their pipeline settled, with the time at which they are
   * written anyway. A cache hit lands here too: 'close' comes from the nextTick queue, which Node drains
   * before the promise jobs that settle handle(). One timer per request instead kept every exchange
   * alive for LOG_WAIT_MS, which under load pushed them all into the old generation (BENCHMARKS.md).
   */
  const late = new Map<() => void, number>();
  const sweep = setInterval(() => {
    const now = performance.now();
    for (const [line, at] of late) {
      if (at > now) break; // insertion order is closing order
      line();
    }
  }, LOG_SWEEP_MS).unref();
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    const ctx = getContext();
    const ex = new Exchange(req, res);
    ex.traceparent = beginTrace(req.headers);
    inflight++;
    live.add(res);
    if (closing) res.shouldKeepAlive = false;
    // The access line is written once the response closed and the pipeline settled, so a failure that
    // comes after the client left (its upload broke off, say) is still in its report; a pipeline that
    // carries on (storing a body the client did not wait for) delays the line by LOG_WAIT_MS at most.
    let settled = false;
    let closed = false;
    let logged = false;
    const logLine = () => {
      if (logged) return;
      logged = true;
      late.delete(logLine);
      ctx.log.request(ex);
      onDone?.(ex);
    };
    res.on('close', () => {
      inflight--;
      live.delete(res);
      closed = true;
      ex.markEnded();
      if (!res.writableFinished) ex.markGone();
      if (settled) logLine();
      else late.set(logLine, performance.now() + LOG_WAIT_MS);
    });
    let body: Readable | null = null;
    if (req.method !== 'GET' && req.method !== 'HEAD') body = requestBody(req, ex, ctx.config.limits.request_body_size);
    else if (req.headers['content-length'] || req.headers['transfer-encoding']) body = requestBody(req, ex, ctx.config.limits.request_body_size);
    const settle = () => {
      settled = true;
      if (closed) logLine();
    };
    handle(ctx, ex, body).then(settle, (err: unknown) => {
      try {
        // A bug, not an origin failure: answer 500 rather than leave the client hanging.
        ctx.log.logger.error({ err, id: ex.id }, 'unhandled error in request pipeline');
        if (!res.headersSent) {
          res.writeHead(500, [
            'content-type', 'text/plain',
            'x-request-id', ex.id,
            'proxy-status', `${ctx.name}; error=proxy_internal_error`,
            'cache-status', cacheStatusValue(ctx.name, ex.cache),
          ]);
          res.end('Internal proxy error\n');
        } else res.destroy();
      } finally {
        settle();
      }
    });
  };
  const server = createServer(
    {
      maxHeaderSize: cfg.limits.request_header_size,
      keepAliveTimeout: 5000,
      requestTimeout: 300_000,
      headersTimeout: 60_000,
    },
    onRequest,
  );
  // Node hands CONNECT to a 'connect' listener (and closes the socket silently without one). Lacquer opens
  // no tunnels: the request takes the normal path, so receive() answers 405 with Allow and it is logged.
  server.on('connect', (req: IncomingMessage, socket: Socket) => {
    socket.on('error', () => undefined);
    const res = new ServerResponse(req);
    res.shouldKeepAlive = false;
    res.assignSocket(socket);
    // No HTTP parser owns this socket any more: close it once the answer is out (its 'close' closes `res`).
    res.on('finish', () => socket.end());
    onRequest(req, res);
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    if (!socket.writable) return socket.destroy();
    // Malformed requests get a 4xx, never a silent close (RFC 9112 §2.2, RFC 6585 §5 for 431). A method the
    // parser does not know is one Lacquer does not forward either: 405 with Allow, as receive() answers.
    const status =
      err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large'
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout'
      : err.code === 'HPE_INVALID_METHOD' ? '405 Method Not Allowed'
      : '400 Bad Request';
    const allow = err.code === 'HPE_INVALID_METHOD' ? `allow: ${ALLOW}\r\n` : '';
    const body = `${status}\n`;
    const cacheStatus = cacheStatusValue(getContext().name, { hit: false });
    socket.end(
      `HTTP/1.1 ${status}\r\ncontent-type: text/plain\r\ncontent-length: ${body.length}\r\ncache-status: ${cacheStatus}\r\n${allow}connection: close\r\n\r\n${body}`,
    );
  });
  const { host, port } = splitHostPort(listen);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    // workers (issue 12): with SO_REUSEPORT every worker binds the port itself (`exclusive`: not through the
    // cluster primary) and the kernel spreads new connections over them.
    server.listen(o.reusePort ? { port, host, reusePort: true, exclusive: true } : { port, host }, () => {
      server.off('error', reject);
      const addr = server.address();
      const boundPort = typeof addr === 'object' && addr ? addr.port : port;
      resolve({
        server,
        address: `${host.includes(':') ? `[${host}]` : host}:${boundPort}`,
        port: boundPort,
        inflight: () => inflight,
        async close(drainMs: number) {
          closing = true;
          // Answers still to come say `Connection: close`, so keep-alive clients do not send another request
          // on a connection that is about to be closed (RFC 9112 §9.6).
          for (const res of live) if (!res.headersSent) res.shouldKeepAlive = false;
          const closed = new Promise<void>((r) => server.close(() => r()));
          server.closeIdleConnections();
          const deadline = Date.now() + drainMs;
          while (inflight > 0 && Date.now() < deadline) {
            await new Promise((r) => setTimeout(r, 25));
            server.closeIdleConnections();
          }
          server.closeAllConnections();
          await closed;
          clearInterval(sweep);
          for (const line of late.keys()) line();
        },
      });
    });
  });
}

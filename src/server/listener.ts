// The client-facing HTTP/1.1 listener: limits, request bodies, the access log line, graceful shutdown.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import type { ProxyContext } from '../pipeline/context.ts';
import { handle } from '../pipeline/steps.ts';
import { Exchange } from './exchange.ts';

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

export function startListener(getContext: () => ProxyContext, listen: string): Promise<Listener> {
  const cfg = getContext().config;
  let inflight = 0;
  let closing = false;
  const server = createServer(
    {
      maxHeaderSize: cfg.limits.request_header_size,
      keepAliveTimeout: 5000,
      requestTimeout: 300_000,
      headersTimeout: 60_000,
    },
    (req: IncomingMessage, res: ServerResponse) => {
      const ctx = getContext();
      const ex = new Exchange(req, res);
      inflight++;
      if (closing) res.setHeader('connection', 'close');
      res.on('close', () => {
        inflight--;
        if (!res.writableFinished) ex.markGone();
        ctx.log.request(ex);
      });
      let body: Readable | null = null;
      if (req.method !== 'GET' && req.method !== 'HEAD') body = requestBody(req, ex, ctx.config.limits.request_body_size);
      else if (req.headers['content-length'] || req.headers['transfer-encoding']) body = requestBody(req, ex, ctx.config.limits.request_body_size);
      handle(ctx, ex, body).catch((err: unknown) => {
        // A bug, not an origin failure: answer 500 rather than leave the client hanging.
        ctx.log.logger.error({ err, id: ex.id }, 'unhandled error in request pipeline');
        if (!res.headersSent) {
          res.writeHead(500, ['content-type', 'text/plain', 'x-request-id', ex.id, 'proxy-status', `${ctx.name}; error=proxy_internal_error`]);
          res.end('Internal proxy error\n');
        } else res.destroy();
      });
    },
  );
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    if (!socket.writable) return socket.destroy();
    // Malformed requests get a 4xx, never a silent close (RFC 9112 §2.2, RFC 6585 §5 for 431).
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
    const body = `${status}\n`;
    socket.end(`HTTP/1.1 ${status}\r\ncontent-type: text/plain\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`);
  });
  const { host, port } = splitHostPort(listen);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
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
          const closed = new Promise<void>((r) => server.close(() => r()));
          server.closeIdleConnections();
          const deadline = Date.now() + drainMs;
          while (inflight > 0 && Date.now() < deadline) {
            await new Promise((r) => setTimeout(r, 25));
            server.closeIdleConnections();
          }
          server.closeAllConnections();
          await closed;
        },
      });
    });
  });
}

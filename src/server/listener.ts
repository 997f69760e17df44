// The client-facing listener: limits, request bodies, the access log line, graceful shutdown. Which
// servers sit behind the address (TLS, HTTP/2, PROXY protocol) is wired in edge.ts.
import { ServerResponse, type IncomingMessage, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import type { ProxyContext } from '../pipeline/context.ts';
import { cacheStatusValue } from '../pipeline/deliver.ts';
import { ALLOW } from '../pipeline/receive.ts';
import { handle } from '../pipeline/steps.ts';
import { Exchange } from './exchange.ts';
import { beginTrace } from '../observe/trace.ts';
import type { ListenerConfig } from '../config/schema.ts';
import { Edge } from './edge.ts';
import { arrive } from '../pipeline/compress.ts';

export type Listener = {
  /** The HTTP/1.1 server (every HTTP/1.x connection of this listener). */
  server: Server;
  /** The bound address, e.g. `127.0.0.1:6081`. */
  address: string;
  port: number;
  /** `http://…` or `https://…` */
  url: string;
  /** Re-reads this listener's certificates (reload); throws if one is bad, keeping the current ones. */
  reload(l: ListenerConfig): void;
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

function endedWithHeaders(req: IncomingMessage): boolean {
  return (req as unknown as { stream?: { endAfterHeaders?: boolean } }).stream?.endAfterHeaders === true;
}

function requestBody(req: IncomingMessage, ex: Exchange, max: number): BodyLimit | null {
  const len = req.headers['content-length'];
  // HTTP/2 frames bodies itself (RFC 9113 §8.1): a body without content-length is one whose HEADERS did not end the stream.
  const chunked = req.headers['transfer-encoding'] !== undefined || (req.httpVersionMajor === 2 && len === undefined && !endedWithHeaders(req));
  if (!chunked && (len === undefined || len === '0')) return null;
  // A Content-Length was checked against the limit at receive; the body still goes through BodyLimit so
  // that a body the parser rejects can be failed without destroying the connection (see clientError).
  const limited = new BodyLimit(max, ex);
  // Its failure is reported to whoever reads it; with no reader (a request refused at receive) it must
  // not become an uncaught exception.
  limited.on('error', () => undefined);
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

/**
 * What the listener knows about one client connection: the responses it still owes, in order (Node writes
 * pipelined responses in request order, RFC 9112 §9.3.2), whether it must close once they are out, and the
 * write progress that `timeouts.client_send` watches.
 */
type Conn = {
  /** Responses not yet closed, oldest first (a list through Owed.prev/next: no Map entry made and dropped per request). */
  first: Owed | undefined;
  last: Owed | undefined;
  /** A later request on the connection could not be parsed: close once the owed responses are out. */
  closeAfter: boolean;
  /** Write progress at the last sweep (see sendStalled), and since when it has not moved. */
  completed: number;
  queued: number;
  stalledSince: number | undefined;
};

/**
 * One request from its arrival until its access line is written: its exchange, the request body stream the
 * pipeline reads, its place among its connection's owed responses, and whether the pipeline settled and the
 * response closed (the line is written once both happened). One object per request rather than a closure
 * per event (issue 12: a hit allocates as little as it can).
 */
class Owed {
  readonly ex: Exchange;
  readonly body: Readable | null;
  readonly conn: Conn;
  readonly ctx: ProxyContext;
  prev: Owed | undefined;
  next: Owed | undefined;
  settled = false;
  closed = false;
  logged = false;
  constructor(ex: Exchange, body: Readable | null, conn: Conn, ctx: ProxyContext) {
    this.ex = ex;
    this.body = body;
    this.conn = conn;
    this.ctx = ctx;
    this.prev = conn.last;
    if (conn.last) conn.last.next = this;
    else conn.first = this;
    conn.last = this;
  }

  /** Leaves the connection's list of owed responses; true when none is left. */
  unlink(): boolean {
    const c = this.conn;
    if (this.prev) this.prev.next = this.next;
    else if (c.first === this) c.first = this.next;
    if (this.next) this.next.prev = this.prev;
    else if (c.last === this) c.last = this.prev;
    this.prev = this.next = undefined;
    return c.first === undefined;
  }
}

/** How often connections are checked against timeouts.client_send: a tenth of it, within these bounds. */
const SEND_SWEEP_MIN_MS = 50;
const SEND_SWEEP_MAX_MS = 1000;

/**
 * Has the client accepted no byte since the last look? Node counts a write as done only when the kernel
 * took all of it, so progress is either more writes done, or the same write with fewer bytes left in
 * libuv's queue (`writeQueueSize`, updated as the kernel accepts part of a large write, on plain TCP).
 * Like nginx's send_timeout, this only runs while output is waiting.
 */
function sendStalled(socket: Socket, c: Conn, now: number): boolean {
  const waiting = socket.writableLength;
  if (waiting === 0) {
    c.stalledSince = undefined;
    return false;
  }
  const completed = socket.bytesWritten - waiting;
  const queued = (socket as Socket & { _handle?: { writeQueueSize?: number } | null })._handle?.writeQueueSize ?? 0;
  const moved = completed > c.completed || (completed === c.completed && queued < c.queued);
  c.completed = completed;
  c.queued = queued;
  if (moved || c.stalledSince === undefined) {
    c.stalledSince = now;
    return false;
  }
  return true;
}

/** reusePort: bind with SO_REUSEPORT in this process (a worker of `workers: N`, `workers_balance: reuseport`). */
export function startListener(getContext: () => ProxyContext, spec: ListenerConfig, onDone?: OnRequestDone, o: { reusePort?: boolean } = {}): Promise<Listener> {
  const cfg = getContext().config;
  let inflight = 0;
  let closing = false;
  const conns = new Map<Socket, Conn>();
  // timeouts.client_send (nginx's send_timeout): a client that accepts no byte of its response for that
  // long is disconnected (issue 11: clients that never read held origin connections and, with
  // max_connections, blocked every other miss). Its exchange is then "gone": forward() keeps the origin
  // fetch only while the object is being stored or other requests wait for it.
  const sendSweepMs = Math.min(SEND_SWEEP_MAX_MS, Math.max(SEND_SWEEP_MIN_MS, Math.floor(cfg.timeouts.client_send / 10)));
  const sendSweep = setInterval(() => {
    const limit = getContext().config.timeouts.client_send;
    if (!(limit > 0)) return; // 0: no limit
    const now = performance.now();
    for (const [socket, c] of conns) {
      if (!sendStalled(socket, c, now) || now - c.stalledSince! < limit) continue;
      for (let o = c.first; o; o = o.next) o.ex.clientTimeout = `timeouts.client_send=${limit}ms`;
      socket.destroy();
    }
  }, sendSweepMs).unref();
  /** Marks the connection to close once the responses it owes are out; returns the last of them. */
  const closeAfterOwed = (conn: Conn): Owed => {
    conn.closeAfter = true;
    // The last of them may still say so; an earlier one must not (Node would close after it).
    const last = conn.last!;
    if (!last.ex.res.headersSent) last.ex.res.shouldKeepAlive = false;
    return last;
  };
  /** Tracked from a connection's first request (whatever kind of socket carries it) until it closes. */
  const connOf = (socket: Socket): Conn => {
    let c = conns.get(socket);
    if (!c) {
      conns.set(socket, (c = { first: undefined, last: undefined, closeAfter: false, completed: 0, queued: 0, stalledSince: undefined }));
      socket.once('close', () => conns.delete(socket));
    }
    return c;
  };
  /**
   * Access lines of responses that closed before their pipeline settled, with the time at which they are
   * written anyway. (A hit answered synchronously is settled before its 'close' and never lands here; one
   * answered after a promise would: 'close' comes from the nextTick queue, which Node drains before the
   * promise jobs that settle handle().) One timer per request instead kept every exchange
   * alive for LOG_WAIT_MS, which under load pushed them all into the old generation (BENCHMARKS.md).
   */
  const late = new Map<Owed, number>();
  const sweep = setInterval(() => {
    const now = performance.now();
    for (const [o, at] of late) {
      if (at > now) break; // insertion order is closing order
      logLine(o);
    }
  }, LOG_SWEEP_MS).unref();
  const logLine = (o: Owed): void => {
    if (o.logged) return;
    o.logged = true;
    late.delete(o);
    o.ctx.log.request(o.ex);
    onDone?.(o.ex);
  };
  // The access line is written once the response closed and the pipeline settled, so a failure that
  // comes after the client left (its upload broke off, say) is still in its report; a pipeline that
  // carries on (storing a body the client did not wait for) delays the line by LOG_WAIT_MS at most.
  const settle = (o: Owed): void => {
    o.settled = true;
    if (o.closed) logLine(o);
  };
  const closed = (o: Owed, socket: Socket): void => {
    const { ex } = o;
    const res = ex.res;
    inflight--;
    if (o.unlink() && o.conn.closeAfter) socket.end();
    o.closed = true;
    ex.markEnded();
    // Closed before the whole answer went out: the client left. HTTP/2's compatibility response reports a
    // stream reset by the client as finished (its 'close' marks it so), so an answer never ended counts too —
    // else a fetch writing to it waits for a 'drain' that never comes and holds its backend slot for good.
    if (!res.writableFinished || !res.writableEnded) ex.markGone();
    if (o.settled) logLine(o);
    else late.set(o, performance.now() + LOG_WAIT_MS);
  };
  const failed = (o: Owed, err: unknown): void => {
    const { ex, ctx } = o;
    const res = ex.res;
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
      settle(o);
    }
  };
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    const ctx = getContext();
    const ex = new Exchange(req, res);
    ex.traceparent = beginTrace(req.headers);
    arrive(ctx, ex);
    inflight++;
    const socket = req.socket; // req.socket is null once the response is detached from it
    const conn = connOf(socket);
    if (closing) res.shouldKeepAlive = false;
    let body: Readable | null = null;
    if (req.method !== 'GET' && req.method !== 'HEAD') body = requestBody(req, ex, ctx.config.limits.request_body_size);
    else if (req.headers['content-length'] || req.headers['transfer-encoding'] || (req.httpVersionMajor === 2 && !endedWithHeaders(req))) body = requestBody(req, ex, ctx.config.limits.request_body_size);
    const o = new Owed(ex, body, conn, ctx);
    res.on('close', () => closed(o, socket));
    let pending: Promise<void> | undefined;
    try {
      pending = handle(ctx, ex, body);
    } catch (err) {
      failed(o, err);
      return;
    }
    // Answered synchronously (a hit): settled before 'close', so the access line is written at 'close'
    // without going through `late`.
    if (pending === undefined) settle(o);
    else pending.then(() => settle(o), (err: unknown) => failed(o, err));
  };
  const edge = new Edge({
    listener: spec,
    http1: {
      maxHeaderSize: cfg.limits.request_header_size,
      keepAliveTimeout: 5000,
      requestTimeout: 300_000,
      headersTimeout: 60_000,
    },
    headerLimit: cfg.limits.request_header_size,
    onRequest,
    onRefused: (why, socket) => getContext().log.logger.warn({ listener: spec.address, peer: socket.remoteAddress }, `connection refused: ${why}`),
  });
  const server = edge.h1;
  // Node hands CONNECT to a 'connect' listener (and closes the socket silently without one). Lacquer opens
  // no tunnels: the request takes the normal path, so receive() answers 405 with Allow and it is logged.
  server.on('connect', (req: IncomingMessage, socket: Socket) => {
    socket.on('error', () => undefined);
    const conn = conns.get(socket);
    if (conn?.first) {
      // A CONNECT pipelined behind a request still being answered: the socket belongs to that response
      // (assigning it again threw, uncaught: the fuzz test's find). No tunnel would be opened anyway;
      // like any request that cannot take its turn, it gets no answer and the connection closes after.
      closeAfterOwed(conn);
      return;
    }
    const res = new ServerResponse(req);
    res.shouldKeepAlive = false;
    res.assignSocket(socket);
    // No HTTP parser owns this socket any more: close it once the answer is out (its 'close' closes `res`).
    res.on('finish', () => socket.end());
    onRequest(req, res);
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    if (!socket.writable) return socket.destroy();
    const conn = conns.get(socket);
    if (conn?.first) {
      // A pipelined request after one still being answered is malformed: its 400 would land inside the
      // pending response (issue 11 found `HTTP/1.1 405` 1.8 MB into a 20 MiB body). Responses go out in
      // request order (RFC 9112 §9.3.2), and one that cannot be parsed has no place in that order: finish
      // the owed responses, then close (RFC 9112 §9.6). The parser keeps failing on later bytes; ignore them.
      const last = closeAfterOwed(conn);
      if (!last.ex.req.complete && (err.code === 'HPE_INVALID_EOF_STATE' || err.code === 'ERR_HTTP_REQUEST_TIMEOUT')) {
        // The input ended in the middle of that request's body, or the body took longer than the request
        // timeout: the client stopped sending, it left (logged 499; nginx too closes without an answer
        // on client_body_timeout). Nothing more of the body will come, so nothing can be answered.
        socket.destroy();
        return;
      }
      if (!last.ex.req.complete) {
        // The bytes that failed are the last request's own body (a broken chunk): nothing more of it
        // can be read. Fail the body the pipeline reads, so it answers 400
        // (nginx: "client sent invalid chunked body") instead of waiting for the rest forever.
        last.ex.bodyMalformed = true;
        last.body?.destroy(Object.assign(new Error(`malformed request body: ${err.code ?? err.message}`), { code: 'LACQUER_BODY_MALFORMED' }));
      }
      return;
    }
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
  const { host, port } = splitHostPort(spec.address);
  return edge.listen(port, host, o.reusePort).then((boundPort) => {
    const address = `${host.includes(':') ? `[${host}]` : host}:${boundPort}`;
    return {
      server,
      address,
      port: boundPort,
      url: `${spec.tls ? 'https' : 'http'}://${address}`,
      inflight: () => inflight,
      reload(l: ListenerConfig) {
        if (edge.tls && l.tls) edge.tls.reload(l.tls);
      },
      async close(drainMs: number) {
        closing = true;
        // Answers still to come say `Connection: close`, so keep-alive clients do not send another request
        // on a connection that is about to be closed (RFC 9112 §9.6).
        for (const c of conns.values()) for (let o = c.first; o; o = o.next) if (!o.ex.res.headersSent) o.ex.res.shouldKeepAlive = false;
        const closed = edge.stopAccepting();
        edge.closeIdle();
        const deadline = Date.now() + drainMs;
        while (inflight > 0 && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 25));
          edge.closeIdle();
        }
        edge.closeAll();
        await closed;
        clearInterval(sweep);
        clearInterval(sendSweep);
        for (const o of late.keys()) logLine(o);
      },
    };
  });
}

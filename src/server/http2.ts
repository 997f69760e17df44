// HTTP/2 to clients (RFC 9113) through Node's compatibility API, so the pipeline behind it is the same one
// HTTP/1.1 requests take. This file owns the limits that keep one client from exhausting the proxy and the
// small adaptations the pipeline needs (a Host header from :authority, no pseudo-headers forwarded).
import type { IncomingMessage, ServerResponse } from 'node:http';
import http2, { constants, type Http2ServerRequest, type Http2ServerResponse, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';

/**
 * RFC 9113 §5.1.2 SETTINGS_MAX_CONCURRENT_STREAMS: Node advertises no limit by default; 128 is nginx's
 * `http2_max_concurrent_streams`. Streams beyond it are refused by the client's own stack.
 */
export const MAX_CONCURRENT_STREAMS = 128;
/**
 * CVE-2023-44487 ("rapid reset"): a client opens streams and cancels them at once, so the server keeps
 * starting work no client waits for. More than BURST resets, refilled at RATE per second, and the session
 * gets GOAWAY and is closed (nghttp2's token bucket, set here on purpose rather than left to defaults).
 */
export const STREAM_RESET_BURST = 200;
export const STREAM_RESET_RATE = 50;
/**
 * The same attack seen from the streams (Envoy's "premature reset" check): once a session has opened this
 * many streams, and at least half of them were reset by the client before any response, it is closed with
 * GOAWAY ENHANCE_YOUR_CALM. This catches what the frame-rate bucket misses when the client's stack paces
 * its resets (over TLS, Node's own client keeps under it).
 */
export const PREMATURE_RESET_MIN_STREAMS = 100;
/** A session with no frames for this long is closed with GOAWAY (nginx's keepalive for HTTP/2 is 75 s). */
const SESSION_IDLE_MS = 120_000;

export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => void;

/** The HTTP/2 side of one listener: a server that never listens, fed handshaken (or h2c) sockets. */
export class Http2Side {
  readonly server: http2.Http2Server;
  readonly #sessions = new Set<ServerHttp2Session>();

  constructor(headerListSize: number, onRequest: RequestHandler) {
    this.server = http2.createServer({
      settings: { maxConcurrentStreams: MAX_CONCURRENT_STREAMS, maxHeaderListSize: headerListSize },
      // RFC 9113 §6.5.2 SETTINGS_MAX_HEADER_LIST_SIZE is advisory: Node enforces it on what it receives
      // too (the stream is reset with a 431-equivalent), like limits.request_header_size on HTTP/1.1.
      maxSendHeaderBlockLength: 256 * 1024,
      streamResetBurst: STREAM_RESET_BURST,
      streamResetRate: STREAM_RESET_RATE,
    });
    this.server.on('session', (session: ServerHttp2Session) => {
      this.#sessions.add(session);
      session.on('close', () => this.#sessions.delete(session));
      session.on('error', () => undefined); // protocol errors close the session; nothing to answer
      session.setTimeout(SESSION_IDLE_MS, () => session.close());
      let streams = 0;
      let premature = 0;
      session.on('stream', (stream: ServerHttp2Stream) => {
        stream.once('close', () => {
          streams++;
          if (stream.rstCode !== constants.NGHTTP2_NO_ERROR && !stream.headersSent) premature++;
          if (streams >= PREMATURE_RESET_MIN_STREAMS && premature * 2 >= streams && !session.destroyed) {
            session.destroy(new Error('HTTP/2 rapid reset: most streams cancelled before an answer'), constants.NGHTTP2_ENHANCE_YOUR_CALM);
          }
        });
      });
    });
    this.server.on('request', (req: Http2ServerRequest, res: Http2ServerResponse) => {
      adaptRequest(req);
      // A stream cancelled in the same read as its HEADERS is closed by the time the I/O phase ends: it
      // then starts no work (no origin fetch, no coalescing slot) — the amplification CVE-2023-44487 uses.
      setImmediate(() => {
        if (res.stream.destroyed) return;
        // The compatibility API mirrors IncomingMessage/ServerResponse closely enough for the pipeline
        // (headers, url, method, writeHead with a header list, write/drain/end, close): the types differ.
        onRequest(req as unknown as IncomingMessage, res as unknown as ServerResponse);
      });
    });
    this.server.on('sessionError', () => undefined);
  }

  /** Sessions open now (for shutdown). */
  get sessions(): number {
    return this.#sessions.size;
  }

  /** Graceful: GOAWAY to every session, so clients open no new streams; streams in flight finish. */
  closeIdle(): void {
    for (const s of this.#sessions) if (!s.closed) s.close();
  }

  /** Drain time is over: every session goes now. */
  closeAll(): void {
    for (const s of this.#sessions) s.destroy();
  }
}

/**
 * RFC 9113 §8.3.1: `:authority` replaces Host (a request may carry both; they must agree, §8.3.1, and Host
 * wins for HTTP/1.1 semantics downstream). Pseudo-headers are not fields: they must never reach the origin.
 */
export function adaptRequest(req: Http2ServerRequest): void {
  const raw = req.rawHeaders;
  let w = 0;
  let host = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.charCodeAt(0) === 58 /* ':' */) continue;
    if (name === 'host') host = true;
    raw[w++] = name;
    raw[w++] = raw[i + 1]!;
  }
  raw.length = w;
  const authority = req.headers[':authority'];
  if (!host && typeof authority === 'string') {
    raw.push('host', authority);
    req.headers.host = authority;
  }
}

// The servers behind one client listener, wired by what the listener is configured to speak:
//
//   accept ─ (proxy_protocol: PROXY v1/v2 header) ─ (tls: handshake, ALPN) ─┬─ h2 / h2c preface → HTTP/2 sessions
//                                                                           └─ otherwise → HTTP/1.1 server
//
// A plain listener without PROXY protocol or h2c is the HTTP/1.1 server itself, listening as it always
// did. Otherwise a bare TCP server accepts and hands each socket on; the HTTP/1.1 server then never
// listens but still owns its connections (keep-alive, timeouts, closeIdleConnections).
import { createServer, type Server, type ServerOptions } from 'node:http';
import net, { type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { ListenerConfig } from '../config/schema.ts';
import { Http2Side, type RequestHandler } from './http2.ts';
import { readProxyHeader } from './proxy-protocol.ts';
import { TlsTerminator } from './tls.ts';

/** RFC 9113 §3.4: the client connection preface of HTTP/2 with prior knowledge. */
const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

export type EdgeOptions = {
  listener: ListenerConfig;
  http1: ServerOptions;
  /** limits.request_header_size, also the HTTP/2 header list limit. */
  headerLimit: number;
  onRequest: RequestHandler;
  /** A connection refused before HTTP (PROXY header missing or invalid): for the operational log. */
  onRefused?: (why: string, socket: Socket) => void;
};

export class Edge {
  /** Every HTTP/1.x connection of this listener, plain or TLS. */
  readonly h1: Server;
  readonly h2: Http2Side | undefined;
  readonly tls: TlsTerminator | undefined;
  /** The server that listens: `h1` itself, or the TCP server in front. */
  readonly front: net.Server;
  /** Sockets accepted by the front and not yet handed to a server (PROXY header, handshake, preface). */
  readonly #pending = new Set<Socket>();
  #closed = false;

  constructor(o: EdgeOptions) {
    const l = o.listener;
    this.h1 = createServer(o.http1, o.onRequest);
    this.h2 = l.http2 ? new Http2Side(o.headerLimit, o.onRequest) : undefined;
    if (l.tls) this.tls = new TlsTerminator(l.tls, l.http2 ? ['h2', 'http/1.1'] : ['http/1.1'], (s) => this.#secure(s));
    if (!l.tls && !l.http2 && !l.proxy_protocol) {
      this.front = this.h1;
      return;
    }
    // Connection tracking of an http.Server starts on 'listening' (it drives headersTimeout/requestTimeout
    // and closeIdleConnections); this one is fed sockets by the front, so it is started by hand.
    this.h1.emit('listening');
    this.front = net.createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: false }, (socket) => {
      this.#pending.add(socket);
      socket.once('close', () => this.#pending.delete(socket));
      socket.on('error', () => undefined);
      if (l.proxy_protocol) readProxyHeader(socket, (s) => this.#afterProxy(s), (why) => o.onRefused?.(why, socket));
      else this.#afterProxy(socket);
    });
  }

  #afterProxy(socket: Socket): void {
    if (this.tls) {
      // HTTP/1.1 wants half-open sockets (answer a request whose sender already shut down writing); under
      // TLS that leaves the accepted socket blind to the peer's FIN, and a vanished client would sit in
      // its handshake until the timeout. TLS has its own close_notify, so the raw socket need not be half-open.
      socket.allowHalfOpen = false;
      this.tls.accept(socket); // stays pending until the handshake is done (#secure)
    } else if (this.h2) sniffPreface(socket, (isH2) => this.#hand(socket, isH2));
    else this.#hand(socket, false);
  }

  #secure(socket: TLSSocket): void {
    const parent = (socket as unknown as { _parent?: Socket })._parent;
    if (parent) this.#pending.delete(parent);
    this.#hand(socket, socket.alpnProtocol === 'h2');
  }

  #hand(socket: Socket, h2: boolean): void {
    this.#pending.delete(socket);
    if (this.#closed) {
      socket.destroy(); // its handshake or preface finished after the drain time was over
      return;
    }
    if (h2 && this.h2) this.h2.server.emit('connection', socket);
    else {
      this.h1.emit('connection', socket);
      // Paused while the PROXY header or the preface was read; the bytes put back are in its buffer.
      socket.resume();
    }
  }

  /** reusePort: bind with SO_REUSEPORT (`exclusive`: not through the cluster primary), for a worker of `workers: N`. */
  listen(port: number, host: string, reusePort = false): Promise<number> {
    return new Promise((resolve, reject) => {
      this.front.once('error', reject);
      this.front.listen(reusePort ? { port, host, reusePort: true, exclusive: true } : { port, host }, () => {
        this.front.off('error', reject);
        const addr = this.front.address();
        resolve(typeof addr === 'object' && addr ? addr.port : port);
      });
    });
  }

  /** Stops accepting; resolves when the listening socket is closed (connections may remain). */
  stopAccepting(): Promise<void> {
    return new Promise((r) => {
      if (this.front === this.h1) this.h1.close(() => r());
      else {
        this.front.close(() => r());
        // Also stops the h1 server's connection-checking interval (it never listened: the error is expected).
        this.h1.close(() => undefined);
      }
    });
  }

  /** Idle HTTP/1.1 connections close; HTTP/2 sessions get GOAWAY and finish their streams. */
  closeIdle(): void {
    this.h1.closeIdleConnections();
    this.h2?.closeIdle();
  }

  closeAll(): void {
    this.#closed = true;
    this.h1.closeAllConnections();
    this.h2?.closeAll();
    for (const s of this.#pending) s.destroy();
  }
}

/** Plain listeners with `http2: true`: a connection that starts with the HTTP/2 preface is h2c, any other HTTP/1.1. */
function sniffPreface(socket: Socket, decide: (h2: boolean) => void): void {
  let buf: Buffer = Buffer.alloc(0);
  const onData = (chunk: Buffer) => {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    const n = Math.min(buf.length, H2_PREFACE.length);
    const prefix = buf.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
    if (prefix && buf.length < H2_PREFACE.length) return;
    socket.off('data', onData);
    socket.pause();
    socket.unshift(buf);
    decide(prefix);
  };
  socket.on('data', onData);
  socket.resume(); // it was paused if a PROXY header came first
}

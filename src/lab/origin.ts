// Fault-injecting fake origin used by the tests, the `npm start` demo and the resilience lab.
import http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { checksum, CHECKSUM_HEADER } from './checksum.ts';
import {
  bodyFor, DEFAULT_BODY_SIZE, DEFAULT_GARBAGE, defaultBody, fillerHeaders, notModified, parseBehaviour, seededRandom,
} from './origin-behaviours.ts';
import type { Behaviour, NormalOpts } from './origin-behaviours.ts';

export type { Behaviour, BehaviourKind, NormalOpts } from './origin-behaviours.ts';
export { defaultBody, parseBehaviour } from './origin-behaviours.ts';
export { checksum, verifyChecksum } from './checksum.ts';

export type OriginOptions = {
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0 (ephemeral). */
  port?: number;
  /** Idle keep-alive timeout of the server, default 5000 (Node's). Applied exactly: Node's extra
   *  keepAliveTimeoutBuffer is set to 0, so an idle socket is closed after this many ms. */
  keepAliveTimeoutMs?: number;
  /** Behaviours by exact path (without query); '*' is the default. Unlisted paths answer `normal`. */
  behaviours?: Record<string, Behaviour>;
  /** Seed for the PRNG used by `error.probability` and `slow` distributions (default Math.random). */
  seed?: number;
};

export type RequestLogEntry = {
  method: string;
  /** Path without query. */
  path: string;
  /** Raw query string without '?', '' when absent. */
  query: string;
  headers: Record<string, string | string[] | undefined>;
  /** Date.now() when the request head arrived. */
  at: number;
  /** Sequence number (1-based) of the TCP connection that carried the request. */
  connectionId: number;
  /** 0 for the first request on its connection, 1 for the second (keep-alive reuse), ... */
  socketRequestIndex: number;
  /** Request body length; updated when the body has been read completely. */
  bodyBytes: number;
  /** Kind of the behaviour applied, or 'invalid' when `x-lab-behaviour` could not be parsed. */
  behaviour: string;
};

export type OriginStats = { total: number; connections: number; inFlight: number; paths: Record<string, number>; /** Most requests in flight at once since start (or the last reset()). */ peakInFlight?: number };

export type Origin = {
  url: string;
  port: number;
  /** Path exact (without query) or '*' for the default. Throws on a malformed behaviour. */
  set(path: string, b: Behaviour): void;
  /** Requests received (all, or for that exact path), counted when the request head arrives. Control requests excluded. */
  count(path?: string): number;
  /** Log of received requests (same array for the origin's lifetime; reset() empties it in place). */
  requests: RequestLogEntry[];
  /** TCP connections accepted since start (or the last reset()). Includes connections used for /__lab/ requests. */
  connections(): number;
  stats(): OriginStats;
  /** Zero counters and the log (behaviours are kept). */
  reset(): void;
  /** Stop listening and destroy open sockets so connects get ECONNREFUSED; the port number is kept. */
  refuse(): Promise<void>;
  /** Listen again on the same port. */
  resume(): Promise<void>;
  /** Destroy all sockets, clear all timers, stop listening. Idempotent. */
  close(): Promise<void>;
};

type Ctx = { req: IncomingMessage; res: ServerResponse; path: string; target: string; served: number; load: number };
type Built = { status: number; headers: Record<string, string | string[]>; body: Buffer; sendBody: boolean };

const CONTROL_PREFIX = '/__lab/';
const RESET_GRACE_MS = 10; // let written bytes reach the peer before the RST
const noop = (): void => {};

export async function startOrigin(opts: OriginOptions = {}): Promise<Origin> {
  const host = opts.host ?? '127.0.0.1';
  const behaviours = new Map<string, Behaviour>();
  const random = opts.seed === undefined ? Math.random : seededRandom(opts.seed);
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const socketInfo = new WeakMap<Socket, { id: number; requests: number }>();
  const perPath = new Map<string, number>();
  const requests: RequestLogEntry[] = [];
  let total = 0;
  let connections = 0;
  let connectionSeq = 0;
  let inFlight = 0;
  let peakInFlight = 0;
  /** Requests waiting for a delayed capacity 503: in flight, but holding no worker. */
  let refusing = 0;
  let closed = false;

  const set = (path: string, b: Behaviour): void => {
    if (path !== '*' && !path.startsWith('/')) throw new Error(`behaviour path must be '*' or start with '/': ${path}`);
    behaviours.set(path, parseBehaviour(b));
  };
  for (const [p, b] of Object.entries(opts.behaviours ?? {})) set(p, b);

  const sleep = (ms: number): Promise<void> => new Promise((resolve) => {
    if (!(ms > 0)) return resolve();
    const t = setTimeout(() => { timers.delete(t); resolve(); }, ms);
    timers.add(t);
  });

  const stats = (): OriginStats => ({ total, connections, inFlight, paths: Object.fromEntries(perPath), peakInFlight });

  const reset = (): void => {
    total = 0;
    connections = 0;
    peakInFlight = inFlight;
    perPath.clear();
    requests.length = 0;
  };

  const keepAlive = opts.keepAliveTimeoutMs ?? 5000;
  const server = http.createServer({ keepAliveTimeout: keepAlive, keepAliveTimeoutBuffer: 0 });
  server.keepAliveTimeout = keepAlive;
  server.keepAliveTimeoutBuffer = 0;

  server.on('connection', (socket: Socket) => {
    connections++;
    sockets.add(socket);
    socketInfo.set(socket, { id: ++connectionSeq, requests: 0 });
    socket.on('error', noop);
    socket.on('close', () => sockets.delete(socket));
  });

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    req.on('error', noop);
    res.on('error', noop);
    const target = req.url ?? '/';
    const q = target.indexOf('?');
    const path = q < 0 ? target : target.slice(0, q);
    const query = q < 0 ? '' : target.slice(q + 1);
    if (path.startsWith(CONTROL_PREFIX)) {
      void control(req, res, path, query);
      return;
    }
    total++;
    const served = (perPath.get(path) ?? 0) + 1;
    perPath.set(path, served);
    const info = socketInfo.get(req.socket) ?? { id: 0, requests: 0 };
    inFlight++;
    if (inFlight > peakInFlight) peakInFlight = inFlight;
    const load = inFlight - refusing;
    const socket = req.socket;
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      inFlight--;
      socket.off('close', finish);
    };
    res.on('close', finish);
    socket.on('close', finish);

    let behaviour: Behaviour | undefined;
    let invalid: string | undefined;
    const hdr = req.headers['x-lab-behaviour'];
    if (hdr !== undefined) {
      try { behaviour = parseBehaviour(JSON.parse(Array.isArray(hdr) ? hdr[0] : hdr)); }
      catch (e) { invalid = `x-lab-behaviour: ${(e as Error).message}`; }
    } else behaviour = behaviours.get(path) ?? behaviours.get('*') ?? { kind: 'normal' };

    const entry: RequestLogEntry = {
      method: req.method ?? 'GET', path, query, headers: { ...req.headers }, at: Date.now(),
      connectionId: info.id, socketRequestIndex: info.requests++, bodyBytes: 0, behaviour: behaviour?.kind ?? 'invalid',
    };
    requests.push(entry);

    void readBody(req, (n) => { entry.bodyBytes += n; }).then((complete) => {
      if (!complete || closed) return;
      if (behaviour === undefined) return json(res, 400, { error: invalid });
      return run(behaviour, { req, res, path, target, served, load });
    }).catch((e: unknown) => {
      if (!res.headersSent && !gone(res)) json(res, 500, { error: String(e) });
      else res.destroy();
    });
  });

  /** Resolves true when the body was read completely, false when the request was aborted. */
  function readBody(req: IncomingMessage, onBytes: (n: number) => void): Promise<boolean> {
    return new Promise((resolve) => {
      if (req.complete) return resolve(true);
      req.on('data', (c: Buffer) => onBytes(c.length));
      req.on('end', () => resolve(true));
      req.on('close', () => resolve(req.complete));
    });
  }

  function gone(res: ServerResponse): boolean {
    return closed || res.destroyed || res.writableEnded || (res.socket !== null && res.socket.destroyed);
  }

  function json(res: ServerResponse, status: number, obj: unknown): void {
    if (gone(res)) return;
    const s = Buffer.from(JSON.stringify(obj));
    res.writeHead(status, {
      'content-type': 'application/json', 'content-length': String(s.length), 'cache-control': 'no-store',
      [CHECKSUM_HEADER]: checksum(s),
    });
    res.end(s);
  }

  function build(ctx: Ctx, o: NormalOpts, extra: Record<string, string>, mode: 'full' | 'partial'): Built {
    const { req, path, target, served } = ctx;
    let status = o.status ?? 200;
    let body = bodyFor(o, target);
    if (mode === 'partial') {
      if (status === 204 || status === 304) status = 200;
      if (body.length === 0) body = defaultBody(target, DEFAULT_BODY_SIZE);
    }
    const h: Record<string, string | string[]> = { 'content-type': 'text/plain; charset=utf-8' };
    for (const [k, v] of Object.entries(o.headers ?? {})) h[k.toLowerCase()] = v;
    if (o.cacheControl !== undefined) h['cache-control'] = o.cacheControl;
    if (o.etag !== undefined) h.etag = o.etag;
    if (o.lastModified !== undefined) h['last-modified'] = o.lastModified;
    Object.assign(h, extra);
    h.date = new Date().toUTCString();
    h['x-lab-path'] = path;
    h['x-lab-served'] = String(served);
    const method = req.method ?? 'GET';
    const conditional = mode === 'full' && status >= 200 && status < 300 && (method === 'GET' || method === 'HEAD');
    if (conditional && notModified(req.headers, o.etag, o.lastModified)) {
      status = 304;
      for (const k of Object.keys(h)) if (k.startsWith('content-')) delete h[k];
    }
    if (status === 204 || status === 304) return { status, headers: h, body: Buffer.alloc(0), sendBody: false };
    h['content-length'] = String(body.length);
    h[CHECKSUM_HEADER] = checksum(body);
    return { status, headers: h, body, sendBody: method !== 'HEAD' };
  }

  async function respond(ctx: Ctx, o: NormalOpts, extraDelayMs = 0, extra: Record<string, string> = {}): Promise<void> {
    await sleep((o.delayMs ?? 0) + extraDelayMs);
    if (gone(ctx.res)) return;
    const b = build(ctx, o, extra, 'full');
    ctx.res.writeHead(b.status, b.headers);
    if (b.sendBody) ctx.res.end(b.body);
    else ctx.res.end();
  }

  /** Head (full Content-Length) plus at most `afterBytes` body bytes (always at least one byte short). */
  async function partial(ctx: Ctx, o: NormalOpts, afterBytes: number): Promise<Buffer | undefined> {
    await sleep(o.delayMs ?? 0);
    if (gone(ctx.res)) return undefined;
    const b = build(ctx, o, {}, 'partial');
    const { res } = ctx;
    res.writeHead(b.status, b.headers);
    const n = Math.max(0, Math.min(Math.floor(afterBytes), b.body.length - 1));
    if (b.sendBody && n > 0) await new Promise<void>((resolve) => res.write(b.body.subarray(0, n), () => resolve()));
    else res.flushHeaders();
    return b.sendBody ? b.body.subarray(n) : Buffer.alloc(0);
  }

  function rst(socket: Socket): void {
    try { socket.resetAndDestroy(); } catch { socket.destroy(); }
  }

  async function run(b: Behaviour, ctx: Ctx): Promise<void> {
    const { res, req } = ctx;
    switch (b.kind) {
      case 'normal': return respond(ctx, b);
      case 'hang': return; // the socket stays open until the client, close() or refuse() ends it
      case 'slow': {
        if (b.probability !== undefined && random() >= b.probability) return respond(ctx, b.then ?? {});
        const f = b.firstByteMs;
        const ms = typeof f === 'number' ? f : f.minMs + random() * (f.maxMs - f.minMs);
        return respond(ctx, b.then ?? {}, ms);
      }
      case 'stall': {
        const rest = await partial(ctx, b.then ?? {}, b.afterBytes);
        if (rest === undefined || b.resumeAfterMs === undefined) return;
        await sleep(b.resumeAfterMs);
        if (!gone(res)) res.end(rest);
        return;
      }
      case 'reset-before-headers': return rst(req.socket);
      case 'reset-mid-body': {
        if (b.probability !== undefined && random() >= b.probability) return respond(ctx, b.then ?? {});
        if ((await partial(ctx, b.then ?? {}, b.afterBytes)) === undefined) return;
        await sleep(RESET_GRACE_MS);
        if (!closed && !req.socket.destroyed) rst(req.socket);
        return;
      }
      case 'garbage': {
        req.socket.end(Buffer.from(b.payload ?? DEFAULT_GARBAGE, 'latin1'));
        return;
      }
      case 'huge-headers': return respond(ctx, b.then ?? {}, 0, fillerHeaders(b.bytes));
      case 'error': {
        if (random() < (b.probability ?? 1)) {
          const status = b.status ?? 503;
          return respond(ctx, { status, body: b.body ?? `lab error ${status}\n`, headers: b.headers });
        }
        return respond(ctx, b.otherwise ?? {});
      }
      case 'capacity': {
        const failAbove = b.failAbove ?? 2 * b.capacity;
        const extra = { 'x-lab-load': String(ctx.load) };
        if (ctx.load > failAbove) {
          const refuse = { status: 503, body: 'lab overloaded\n', headers: { 'retry-after': '1' } };
          if (!(b.failDelayMs! > 0)) return respond(ctx, refuse, 0, extra);
          refusing++;
          return respond(ctx, refuse, b.failDelayMs, extra).finally(() => refusing--);
        }
        return respond(ctx, b.then ?? {}, ctx.load > b.capacity ? b.slowMs : 0, extra);
      }
    }
  }

  async function control(req: IncomingMessage, res: ServerResponse, path: string, query: string): Promise<void> {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    if (!(await readBody(req, noop))) return;
    const method = req.method ?? 'GET';
    const target = new URLSearchParams(query).get('path');
    if (path === '/__lab/behaviour' && (method === 'PUT' || method === 'POST')) {
      if (!target) return json(res, 400, { error: 'missing ?path=' });
      try {
        const b = parseBehaviour(JSON.parse(Buffer.concat(chunks).toString('utf8')));
        set(target, b);
        return json(res, 200, { path: target, behaviour: b });
      } catch (e) {
        return json(res, 400, { error: (e as Error).message });
      }
    }
    if (path === '/__lab/behaviour' && method === 'DELETE') {
      if (!target) return json(res, 400, { error: 'missing ?path=' });
      return json(res, 200, { path: target, deleted: behaviours.delete(target) });
    }
    if (path === '/__lab/behaviour' && method === 'GET') return json(res, 200, Object.fromEntries(behaviours));
    if (path === '/__lab/stats' && method === 'GET') return json(res, 200, stats());
    // For proxies' health probes: answers 200 while the process listens, whatever the path behaviours are.
    if (path === '/__lab/health' && (method === 'GET' || method === 'HEAD')) return json(res, 200, { ok: true });
    if (path === '/__lab/requests' && method === 'GET') return json(res, 200, requests);
    if (path === '/__lab/reset' && method === 'POST') { reset(); return json(res, 200, stats()); }
    return json(res, 404, { error: `unknown control request ${method} ${path}` });
  }

  function listen(port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (e: Error): void => reject(e);
      server.once('error', onError);
      server.listen(port, host, () => { server.off('error', onError); resolve(); });
    });
  }

  async function stop(): Promise<void> {
    for (const t of timers) clearTimeout(t);
    timers.clear();
    const closing = server.listening
      ? new Promise<void>((resolve) => server.close(() => resolve()))
      : Promise.resolve();
    server.closeAllConnections();
    for (const s of sockets) s.destroy();
    sockets.clear();
    await closing;
  }

  await listen(opts.port ?? 0);
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('lab origin: unexpected server address');
  const port = address.port;
  const urlHost = host.includes(':') ? `[${host}]` : host;

  return {
    url: `http://${urlHost}:${port}`,
    port,
    set,
    count: (path?: string) => (path === undefined ? total : perPath.get(path) ?? 0),
    requests,
    connections: () => connections,
    stats,
    reset,
    refuse: () => stop(),
    resume: async () => {
      if (closed) throw new Error('lab origin: closed');
      if (!server.listening) await listen(port);
    },
    close: async () => {
      closed = true;
      await stop();
    },
  };
}

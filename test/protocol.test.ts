// HTTP/1.1 proxy behaviour (RFC 9110 §7.6, RFC 9112): header rewriting both ways, request bodies,
// what an open proxy would accept and Lacquer refuses, limits, request ids, Cache-Status, backpressure.
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { startHarness, sleep, type Harness } from './helpers.ts';
import { parseHead, rawExchange, rawRequest } from './raw-client.ts';

let h: Harness | undefined;
const servers: http.Server[] = [];
afterEach(async () => {
  await h?.close();
  h = undefined;
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

const port = () => Number(new URL(h!.url).port);

describe('header rewriting (RFC 9110 §7.6.1 hop-by-hop, §7.6.3 Via, X-Forwarded-*)', () => {
  it('strips hop-by-hop request fields, including those named in Connection; adds Via and X-Forwarded-*', async () => {
    h = await startHarness();
    const r = await rawRequest(`${h.url}/hop`, {
      headers: {
        connection: 'keep-alive, X-Secret-Hop',
        'x-secret-hop': 'must not reach the origin',
        'keep-alive': 'timeout=9',
        te: 'trailers',
        'proxy-connection': 'keep-alive',
        'x-end-to-end': 'kept',
        via: '1.1 edge',
        'x-forwarded-for': '6.6.6.6',
        'x-forwarded-proto': 'https',
      },
    });
    expect(r.status).toBe(200);
    const seen = h.origins[0]!.requests.at(-1)!.headers;
    for (const f of ['x-secret-hop', 'keep-alive', 'te', 'proxy-connection']) expect(seen[f], f).toBeUndefined();
    expect(String(seen['connection'] ?? '')).not.toMatch(/secret/i);
    expect(seen['x-end-to-end']).toBe('kept');
    expect(seen['via']).toBe('1.1 edge, 1.1 lacquer');
    // not trusted: the client's claims are replaced, not extended
    expect(seen['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen['x-forwarded-proto']).toBe('http');
    expect(seen['x-request-id']).toBe(r.headers['x-request-id']);
  });

  it('with proxy.trust_forwarded, extends the client X-Forwarded-For and keeps its X-Forwarded-Proto', async () => {
    h = await startHarness({ config: { proxy: { trust_forwarded: true } } });
    await rawRequest(`${h.url}/xff`, { headers: { 'x-forwarded-for': '6.6.6.6', 'x-forwarded-proto': 'https' } });
    const seen = h.origins[0]!.requests.at(-1)!.headers;
    expect(seen['x-forwarded-for']).toBe('6.6.6.6, 127.0.0.1');
    expect(seen['x-forwarded-proto']).toBe('https');
  });

  it('strips hop-by-hop response fields on a miss, a hit and a pass; appends Via to the origin Via', async () => {
    const hop = { connection: 'X-Origin-Hop', 'x-origin-hop': 'secret', 'keep-alive': 'timeout=77', via: '1.1 app', 'x-app': 'kept' };
    h = await startHarness({
      origins: [{ behaviours: { '/cached': { kind: 'normal', cacheControl: 'max-age=60', headers: hop }, '/pass': { kind: 'normal', cacheControl: 'no-store', headers: hop } } }],
    });
    for (const [path, method] of [['/cached', 'GET'], ['/cached', 'GET'], ['/pass', 'GET'], ['/pass', 'POST']] as const) {
      const r = await rawRequest(`${h.url}${path}`, { method, body: method === 'POST' ? 'x' : undefined });
      expect(r.status, `${method} ${path}`).toBe(200);
      expect(r.headers['x-origin-hop'], `${method} ${path}`).toBeUndefined();
      expect(String(r.headers['keep-alive'] ?? ''), `${method} ${path}`).not.toContain('77');
      expect(String(r.headers['connection'] ?? '')).not.toMatch(/origin-hop/i);
      expect(r.headers['x-app']).toBe('kept');
      expect(r.headers['via'], `${method} ${path}`).toBe('1.1 app, 1.1 lacquer');
    }
    expect(h.origins[0]!.count('/cached')).toBe(1);
  });
});

describe('request bodies', () => {
  it('forwards a 1 MiB POST body intact (Content-Length and chunked)', async () => {
    h = await startHarness();
    const body = Buffer.alloc(1024 * 1024, 'abcdefgh');
    const a = await rawRequest(`${h.url}/upload`, { method: 'POST', body, headers: { 'content-type': 'application/octet-stream' } });
    expect(a.status).toBe(200);
    const b = await rawRequest(`${h.url}/upload`, { method: 'POST', body, headers: { 'transfer-encoding': 'chunked' } });
    expect(b.status).toBe(200);
    const seen = h.origins[0]!.requests.filter((q) => q.path === '/upload');
    expect(seen.map((q) => [q.method, q.bodyBytes])).toEqual([['POST', body.length], ['POST', body.length]]);
    expect(seen[0]!.headers['content-length']).toBe(String(body.length));
  });

  it('413 for a body over limits.request_body_size, by Content-Length (origin never asked) and chunked', async () => {
    h = await startHarness({ config: { limits: { request_body_size: '64KiB' } } });
    const big = Buffer.alloc(100 * 1024, 'z');
    const a = await rawRequest(`${h.url}/too-big`, { method: 'POST', body: big });
    expect(a.status).toBe(413);
    expect(a.headers['cache-status']).toBeTruthy();
    expect(h.origins[0]!.count('/too-big')).toBe(0);
    const b = await rawRequest(`${h.url}/too-big-chunked`, { method: 'POST', body: big, headers: { 'transfer-encoding': 'chunked' } });
    expect(b.status).toBe(413);
    // the client's failure, not the origin's: never retried, never counted against the backend
    const report = (await h.log.forRequest(String(b.headers['x-request-id']))).error!;
    expect([report.class, report.phase, report.source, report.code]).toEqual(['http_request_error', 'send', 'downstream', 'LACQUER_BODY_TOO_LARGE']);
    expect(h.proxy.ctx.pool.backends[0]!.counters.failures).toBe(0);
    // the origin may have seen the start of it, never the whole
    for (const q of h.origins[0]!.requests) expect(q.bodyBytes).toBeLessThanOrEqual(64 * 1024);
    const ok = await rawRequest(`${h.url}/small`, { method: 'POST', body: Buffer.alloc(1000), headers: { 'transfer-encoding': 'chunked' } });
    expect(ok.status).toBe(200);
  });
});

describe('what an open proxy would accept', () => {
  it('absolute-form for another host → 400, origin not asked; for its own host → proxied', async () => {
    h = await startHarness();
    const other = parseHead(await rawExchange(port(), `GET http://evil.example/x HTTP/1.1\r\nHost: 127.0.0.1:${port()}\r\nConnection: close\r\n\r\n`));
    expect(other.status).toBe(400);
    expect(other.headers['cache-status']).toBeTruthy();
    expect(h.origins[0]!.count()).toBe(0);
    const own = parseHead(await rawExchange(port(), `GET http://127.0.0.1:${port()}/mine HTTP/1.1\r\nHost: 127.0.0.1:${port()}\r\nConnection: close\r\n\r\n`));
    expect(own.status).toBe(200);
    expect(h.origins[0]!.requests.map((q) => q.path)).toEqual(['/mine']);
  });

  it('CONNECT → 405 with Allow, no tunnel', async () => {
    h = await startHarness();
    const raw = await rawExchange(port(), `CONNECT 127.0.0.1:${h.origins[0]!.port} HTTP/1.1\r\nHost: 127.0.0.1:${h.origins[0]!.port}\r\n\r\n`);
    const r = parseHead(raw);
    expect(r.status).toBe(405);
    expect(r.headers['allow']).toBe('GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS');
    expect(r.headers['cache-status']).toBeTruthy();
    expect(h.origins[0]!.connections()).toBe(0);
    // logged like any request, and not left counted as in flight (which would stall a graceful stop)
    const line = await h.log.forRequest(r.headers['x-request-id']!);
    expect([line.method, line.status, line.served]).toEqual(['CONNECT', 405, 'refused']);
    for (let i = 0; i < 40 && h.proxy.listener.inflight() > 0; i++) await sleep(10);
    expect(h.proxy.listener.inflight()).toBe(0);
  });

  it('methods Lacquer does not forward → 405 with Allow (known to the parser or not); extension methods are forwarded (test/cache-methods.test.ts)', async () => {
    h = await startHarness();
    for (const m of ['TRACE', 'BREW']) {
      const r = parseHead(await rawExchange(port(), `${m} / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`));
      expect(r.status, m).toBe(405);
      expect(r.headers['allow'], m).toBe('GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS');
    }
    expect(h.origins[0]!.count()).toBe(0);
  });

  it('request head over limits.request_header_size → 431', async () => {
    h = await startHarness({ config: { limits: { request_header_size: '4KiB' } } });
    const r = await h.get('/', { 'x-big': 'b'.repeat(8 * 1024) });
    expect(r.status).toBe(431);
    expect(r.headers['cache-status']).toBeTruthy();
    expect(h.origins[0]!.count()).toBe(0);
    expect((await h.get('/', { 'x-small': 'b'.repeat(1024) })).status).toBe(200);
  });
});

describe('request id and Cache-Status', () => {
  it('reuses a well-formed client X-Request-Id (to the origin, the client and the log) and replaces a malformed one', async () => {
    h = await startHarness();
    const a = await h.get('/id', { 'x-request-id': 'trace-abc.123:x' });
    expect(a.headers['x-request-id']).toBe('trace-abc.123:x');
    expect(h.origins[0]!.requests.at(-1)!.headers['x-request-id']).toBe('trace-abc.123:x');
    expect((await h.log.forRequest('trace-abc.123:x')).url).toBe('/id');
    const b = await h.get('/id2', { 'x-request-id': 'bad id <script>' });
    expect(b.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(h.origins[0]!.requests.at(-1)!.headers['x-request-id']).toBe(b.headers['x-request-id']);
  });

  it('Cache-Status on every response: miss, hit, pass, 304, refusal, explained 503', async () => {
    h = await startHarness({ origins: [{ behaviours: { '/c': { kind: 'normal', cacheControl: 'max-age=60', etag: '"v1"' } } }] });
    const cs = (r: { headers: Record<string, unknown> }) => String(r.headers['cache-status']);
    expect(cs(await h.get('/c'))).toMatch(/^lacquer; fwd=uri-miss; fwd-status=200(; ttl=\d+)?; stored$/);
    expect(cs(await h.get('/c'))).toMatch(/^lacquer; hit; ttl=\d+$/);
    const nm = await h.get('/c', { 'if-none-match': '"v1"' });
    expect(nm.status).toBe(304);
    expect(cs(nm)).toMatch(/^lacquer; hit/);
    expect(cs(await h.get('/p', {}, 'POST'))).toMatch(/^lacquer; fwd=method; fwd-status=200$/);
    expect(cs(await h.get('/p', {}, 'TRACE'))).toMatch(/^lacquer/);
    await h.origins[0]!.refuse();
    const e = await h.get('/gone');
    expect(e.status).toBe(503);
    expect(cs(e)).toMatch(/^lacquer; fwd=uri-miss/);
  });
});

describe('backpressure', () => {
  it('a slow-reading client of a 20 MiB uncacheable body does not make Lacquer buffer it', async () => {
    const TOTAL = 20 * 1024 * 1024;
    const CHUNK = Buffer.alloc(64 * 1024, 'q');
    let written = 0;
    const origin = http.createServer(async (_req, res) => {
      res.writeHead(200, { 'content-length': String(TOTAL), 'cache-control': 'no-store' });
      while (written < TOTAL && !res.destroyed) {
        written += CHUNK.length;
        if (!res.write(CHUNK)) await Promise.race([once(res, 'drain'), once(res, 'close')]);
      }
      res.end();
    });
    servers.push(origin);
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
    const originPort = (origin.address() as net.AddressInfo).port;
    h = await startHarness({ backendExtra: [{ url: `http://127.0.0.1:${originPort}` }] });

    const rssBefore = process.memoryUsage().rss;
    const client = net.connect(port(), '127.0.0.1');
    await once(client, 'connect');
    client.write(`GET /big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
    client.pause(); // read nothing for a while
    await sleep(1500);
    const writtenWhilePaused = written;
    const rssPaused = process.memoryUsage().rss;
    // Kernel socket buffers on two loopback connections plus one 64 KiB stream buffer each side: a few MiB at most.
    expect(writtenWhilePaused).toBeLessThan(TOTAL / 2);
    expect(rssPaused - rssBefore).toBeLessThan(TOTAL / 2);

    let got = 0;
    client.on('data', (c: Buffer) => (got += c.length));
    client.resume();
    for (let i = 0; i < 200 && got < TOTAL; i++) await sleep(25);
    client.destroy();
    expect(got).toBeGreaterThan(TOTAL); // head + the whole body once the client reads
    expect(written).toBe(TOTAL);
    console.info(`backpressure: origin wrote ${(writtenWhilePaused / 2 ** 20).toFixed(1)} MiB of 20 while the client read nothing; rss +${((rssPaused - rssBefore) / 2 ** 20).toFixed(1)} MiB`);
  });
});

/** Starts a request and destroys it once `after` happens: the first body bytes, or a delay. */
function abandon(url: string, method: string, after: { firstBytes: true } | { ms: number }): Promise<{ status: number | undefined; bytes: number }> {
  return new Promise((resolve) => {
    const out = { status: undefined as number | undefined, bytes: 0 };
    const req = http.request(url, { method, agent: false }, (res) => {
      out.status = res.statusCode;
      res.on('data', (c: Buffer) => {
        out.bytes += c.length;
        if ('firstBytes' in after) req.destroy();
      });
    });
    req.on('error', () => undefined);
    req.on('close', () => resolve(out));
    if ('ms' in after) setTimeout(() => req.destroy(), after.ms);
    req.end(method === 'POST' ? 'payload' : undefined);
  });
}

/** Polls until the origin has no request in flight (it saw the socket close), at most `ms`. */
async function originIdleWithin(o: Harness['origins'][number], ms: number): Promise<boolean> {
  for (let t = 0; t < ms; t += 20) {
    if (o.stats().inFlight === 0) return true;
    await sleep(20);
  }
  return o.stats().inFlight === 0;
}

describe('a client that goes away', () => {
  const slowBody = (cacheControl: string) => ({ kind: 'stall' as const, afterBytes: 100, resumeAfterMs: 3000, then: { bodySize: 4096, cacheControl } });

  it('aborts its pass (POST) request at the origin mid-body', async () => {
    h = await startHarness({ origins: [{ behaviours: { '/post': slowBody('no-store') } }] });
    const r = await abandon(`${h.url}/post`, 'POST', { firstBytes: true });
    expect([r.status, r.bytes]).toEqual([200, 100]);
    expect(await originIdleWithin(h.origins[0]!, 1000)).toBe(true); // well before the origin's 3 s pause ends
    const line = h.log.access().find((l) => l.url === '/post')!;
    expect(line.client_gone).toBe(true);
  });

  it('aborts an uncacheable GET at the origin mid-body, and a pass still waiting for headers', async () => {
    h = await startHarness({ origins: [{ behaviours: { '/nostore': slowBody('no-store'), '/hang': { kind: 'hang' } } }] });
    await abandon(`${h.url}/nostore`, 'GET', { firstBytes: true });
    expect(await originIdleWithin(h.origins[0]!, 1000)).toBe(true);
    await abandon(`${h.url}/hang`, 'POST', { ms: 150 });
    expect(h.origins[0]!.count('/hang')).toBe(1);
    expect(await originIdleWithin(h.origins[0]!, 1000)).toBe(true);
  });

  it('keeps downloading a cacheable response it is storing: the next request is a hit', async () => {
    h = await startHarness({ origins: [{ behaviours: { '/keep': { ...slowBody('max-age=60'), resumeAfterMs: 500 } } }] });
    await abandon(`${h.url}/keep`, 'GET', { firstBytes: true });
    await sleep(150);
    expect(h.origins[0]!.stats().inFlight).toBe(1); // the origin was not cut off
    for (let i = 0; i < 50 && h.origins[0]!.stats().inFlight > 0; i++) await sleep(20);
    const next = await h.get('/keep');
    expect(next.status).toBe(200);
    expect(String(next.headers['cache-status'])).toMatch(/^lacquer; hit/);
    expect(next.raw.length).toBe(4096);
    expect(h.origins[0]!.count('/keep')).toBe(1);
  });
});

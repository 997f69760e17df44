// Interim responses (RFC 9110 §15.2), extension methods (RFC 9110 §9.1, RFC 9111 §4.4), coalescing per
// Vary variant and the invalidation race (issue 10 items 3, 4 and 7), against real sockets.
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { sleep, startHarness, type Harness, type Reply } from './helpers.ts';
import { parseHead, rawExchange } from './raw-client.ts';

let h: Harness | undefined;
let custom: Custom | undefined;
afterEach(async () => {
  await h?.close();
  await custom?.close();
  h = undefined;
  custom = undefined;
});

const cs = (r: Reply) => String(r.headers['cache-status']);

type Custom = { url: string; seen: { method: string; url: string }[]; close(): Promise<void> };

/** An origin written for one test, for what the lab origin cannot do (interim responses, per-method answers). */
async function customOrigin(handler: http.RequestListener): Promise<Custom> {
  const seen: Custom['seen'] = [];
  const server = http.createServer((req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '' });
    handler(req, res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

async function harnessFor(handler: http.RequestListener, config: Record<string, unknown> = {}): Promise<Harness> {
  custom = await customOrigin(handler);
  const url = custom.url;
  h = await startHarness({ config: () => ({ backends: [{ name: 'custom', url }], ...config }) });
  return h;
}

const proxyPort = () => Number(new URL(h!.url).port);

describe('interim responses (RFC 9110 §15.2)', () => {
  const earlyHints: http.RequestListener = (_req, res) => {
    res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' });
    setTimeout(() => {
      res.writeHead(200, { 'cache-control': 'max-age=60', 'content-type': 'text/plain' });
      res.end('final');
    }, 50);
  };

  it('103 Early Hints reaches an HTTP/1.1 client before the final response, whose headers do not include the hint; it is never cached', async () => {
    await harnessFor(earlyHints);
    const raw = await rawExchange(proxyPort(), 'GET /page HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
    expect(raw).toMatch(/^HTTP\/1\.1 103 Early Hints\r\nlink: <\/style\.css>; rel=preload; as=style\r\n/i);
    const final = raw.slice(raw.indexOf('\r\n\r\n') + 4);
    const head = parseHead(final);
    expect(head.status).toBe(200);
    expect(head.headers['link']).toBeUndefined();
    expect(final).toContain('final');
    const again = await rawExchange(proxyPort(), 'GET /page HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
    expect(again).toMatch(/^HTTP\/1\.1 200/); // a hit: no 103 stored or replayed
    expect(parseHead(again).headers['cache-status']).toMatch(/^lacquer; hit/);
  });

  it('an HTTP/1.0 client gets no 1xx (§15.2: it cannot parse them)', async () => {
    await harnessFor(earlyHints);
    const raw = await rawExchange(proxyPort(), 'GET /page HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n');
    expect(raw).toMatch(/^HTTP\/1\.1 200/);
  });

  it('an unsolicited 100 Continue from the origin is consumed, not an error', async () => {
    await harnessFor((_req, res) => {
      res.writeContinue();
      res.writeHead(200, { 'cache-control': 'max-age=60' });
      res.end('after 100');
    });
    const r = await h!.get('/c');
    expect([r.status, r.body]).toEqual([200, 'after 100']);
    expect(r.headers['proxy-status']).toBeUndefined();
  });

  it('several 100s mixed with a 103, on a reused keep-alive connection, are consumed every time', async () => {
    await harnessFor((req, res) => {
      res.writeContinue();
      res.writeEarlyHints({ link: '</a.js>; rel=preload; as=script' });
      res.writeContinue();
      setTimeout(() => {
        res.writeHead(200, { 'cache-control': 'no-store' });
        res.end(`ok ${req.url}`);
      }, 20);
    });
    for (let i = 0; i < 3; i++) {
      const r = await h!.get(`/k${i}`);
      expect([r.status, r.body]).toEqual([200, `ok /k${i}`]);
    }
    const raw = await rawExchange(proxyPort(), 'GET /k9 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
    expect(raw).toMatch(/^HTTP\/1\.1 103 Early Hints\r\n/);
    expect(raw).not.toMatch(/100 Continue/);
  });
});

describe('interim responses split across TCP segments', () => {
  it('a 100 Continue and a 103 arriving in fragments are told apart from the final response', async () => {
    const fragments = ['HTTP/1.1 1', '00 Continue\r', '\n\r\nHTTP/1.1 1', '03 Early Hints\r\nLink: </x.css>; rel=preload\r\n\r\n', 'HTTP/1.1 2', '00 OK\r\ncontent-length: 2\r\ncache-control: no-store\r\n\r\nok'];
    const server = net.createServer((socket) => {
      socket.once('data', async () => {
        for (const f of fragments) {
          socket.write(f);
          await sleep(15);
        }
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    try {
      h = await startHarness({ config: () => ({ backends: [{ name: 'raw', url: `http://127.0.0.1:${port}` }] }) });
      const raw = await rawExchange(proxyPort(), 'GET /f HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
      expect(raw).toMatch(/^HTTP\/1\.1 103 Early Hints\r\nlink: <\/x\.css>; rel=preload\r\n/i);
      expect(raw).not.toMatch(/100 Continue/);
      expect(raw).toMatch(/\r\n\r\nHTTP\/1\.1 200 OK\r\n[\s\S]*ok$/);
    } finally {
      await h?.close();
      h = undefined;
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});

describe('extension methods (RFC 9110 §9.1, RFC 9111 §4.4)', () => {
  const byMethod: http.RequestListener = (req, res) => {
    res.writeHead(200, { 'cache-control': req.method === 'GET' ? 'max-age=60' : 'no-store' });
    res.end(`${req.method} answered`);
  };

  it('M-SEARCH reaches the origin as a pass, and its 2xx invalidates the stored URI (safety unknown)', async () => {
    await harnessFor(byMethod);
    await h!.get('/dev');
    expect(cs(await h!.get('/dev'))).toMatch(/^lacquer; hit/);
    const r = await h!.send('/dev', { method: 'M-SEARCH' });
    expect([r.status, r.body]).toEqual([200, 'M-SEARCH answered']);
    expect(cs(r)).toMatch(/^lacquer; fwd=method/);
    expect(custom!.seen.map((s) => s.method)).toEqual(['GET', 'M-SEARCH']);
    expect(cs(await h!.get('/dev'))).toMatch(/fwd=uri-miss/);
  });

  it('PROPFIND (safe, RFC 4918 §9.1) is forwarded and does not invalidate', async () => {
    await harnessFor(byMethod);
    await h!.get('/dav');
    const r = await h!.send('/dav', { method: 'PROPFIND' });
    expect(r.body).toBe('PROPFIND answered');
    expect(cs(await h!.get('/dav'))).toMatch(/^lacquer; hit/);
  });

  it('TRACE and CONNECT stay refused (405), the origin never sees them', async () => {
    await harnessFor(byMethod);
    for (const m of ['TRACE / HTTP/1.1', `CONNECT 127.0.0.1:1 HTTP/1.1`]) {
      const head = parseHead(await rawExchange(proxyPort(), `${m}\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`));
      expect(head.status, m).toBe(405);
    }
    expect(custom!.seen).toEqual([]);
  });
});

describe('coalescing and invalidation (issue 10 item 7)', () => {
  it('a GET in flight while a POST invalidates the URI does not store the old response afterwards', async () => {
    let version = 1;
    await harnessFor((req, res) => {
      if (req.method === 'POST') {
        version++;
        res.writeHead(204);
        res.end();
        return;
      }
      const body = `v${version}`;
      setTimeout(() => {
        res.writeHead(200, { 'cache-control': 'max-age=60' });
        res.end(body); // read before the POST: the old representation
      }, 300);
    });
    const slowGet = h!.get('/doc');
    for (let i = 0; i < 200 && custom!.seen.length === 0; i++) await sleep(5); // the GET has reached the origin
    expect((await h!.send('/doc', { method: 'POST', body: 'x' })).status).toBe(204);
    expect((await slowGet).body).toBe('v1'); // this client still gets what it asked for
    const after = await h!.get('/doc');
    expect(after.body).toBe('v2');
    expect(cs(after)).toMatch(/fwd=uri-miss/);
  });

  it('requests for different Vary variants do not wait behind each other\'s fetch; the same variant still coalesces', async () => {
    await harnessFor((req, res) => {
      const lang = String(req.headers['accept-language'] ?? 'none');
      setTimeout(() => {
        res.writeHead(200, { 'cache-control': 'max-age=60', vary: 'Accept-Language' });
        res.end(lang);
      }, lang === 'de' ? 600 : 50);
    });
    await h!.get('/v', { 'accept-language': 'en' }); // the URI's Vary is now known
    const [de1, fr, de2] = await Promise.all([
      h!.get('/v', { 'accept-language': 'de' }),
      sleep(50).then(() => h!.get('/v', { 'accept-language': 'fr' })),
      sleep(50).then(() => h!.get('/v', { 'accept-language': 'de' })),
    ]);
    expect([de1.body, fr.body, de2.body]).toEqual(['de', 'fr', 'de']);
    expect(cs(fr)).not.toMatch(/collapsed/);
    expect([de1, de2].filter((r) => cs(r).includes('collapsed'))).toHaveLength(1);
    expect(custom!.seen.filter((s) => s.method === 'GET')).toHaveLength(3); // en, de, fr
  });
});

// Issue 11, items 1-3 and 5: what the client says about the target (Host), about the connection
// (Connection tokens) and about the body's framing (Transfer-Encoding) can never make the cache store one
// answer under another request's key, nor make the origin see a request other than the one judged.
import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { parseAuthority, primaryKey } from '../src/cache/key.ts';
import { startHarness, type Harness } from './helpers.ts';
import { parseHead, rawExchange } from './raw-client.ts';

let h: Harness | undefined;
let echo: http.Server | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
  if (echo) {
    echo.closeAllConnections();
    await new Promise((r) => echo!.close(r));
    echo = undefined;
  }
});

type Seen = { host: string | undefined; url: string | undefined; headers: http.IncomingHttpHeaders; bodyBytes: number };

/** An origin that reflects the Host and target it received (as a virtual-hosting app would), cacheable for a minute. */
async function startEcho(): Promise<{ url: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  echo = http.createServer((req, res) => {
    let bodyBytes = 0;
    req.on('data', (c: Buffer) => (bodyBytes += c.length));
    req.on('end', () => {
      seen.push({ host: req.headers.host, url: req.url, headers: req.headers, bodyBytes });
      const device = req.headers['x-device'] ?? 'none';
      const body = req.url === '/device' ? `device=${String(device)}` : `host=${req.headers.host} url=${req.url}`;
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(Buffer.byteLength(body)), 'cache-control': 'max-age=60', ...(req.url === '/device' ? { vary: 'X-Device' } : {}) });
      res.end(body);
    });
  });
  await new Promise<void>((r) => echo!.listen(0, '127.0.0.1', r));
  const a = echo.address() as { port: number };
  return { url: `http://127.0.0.1:${a.port}`, seen };
}

const port = () => Number(new URL(h!.url).port);
/** One request on its own connection: status, headers and body of the answer. */
async function raw(head: string, body = ''): Promise<{ status: number; headers: Record<string, string>; body: string; closed: boolean }> {
  const text = await rawExchange(port(), head + body);
  const { status, headers } = parseHead(text);
  return { status, headers, body: text.slice(text.indexOf('\r\n\r\n') + 4), closed: true };
}

describe('primaryKey is built from a validated authority (item 1)', () => {
  it('parses reg-names, IPv4, IP-literals and ports; refuses anything that could end or extend the authority', () => {
    for (const ok of ['example.com', 'Example.COM:8080', '127.0.0.1', '[::1]:6081', '[v1.fe80::a+en1]', 'a_b-c.example', 'xn--bcher-kva.example', 'example.com:', 'ex%41mple.com']) {
      expect(parseAuthority(ok), ok).toBeDefined();
    }
    for (const bad of ['', ':80', 'victim.example/poison1', 'a b', 'user@host', 'a?b', 'a#b', 'a:b', 'a:99999', 'a:1:2', '[::1', '[zz]', '[::1]x', 'a\\b', 'a%2', 'a\u0000b', 'é.example']) {
      expect(parseAuthority(bad), JSON.stringify(bad)).toBeUndefined();
    }
    expect(parseAuthority('Example.COM:8080')).toEqual({ host: 'example.com', port: '8080' });
  });

  it('never gives two different (host, target) pairs one key, and refuses to key an invalid host', () => {
    expect(primaryKey('victim.example', '/poison1/poison2')).toBe('victim.example/poison1/poison2');
    expect(() => primaryKey('victim.example/poison1', '/poison2')).toThrow(TypeError);
    expect(() => primaryKey('victim.example', 'poison2')).toThrow(TypeError);
    expect(primaryKey('Victim.Example:8080', '/a')).toBe('victim.example:8080/a');
    // a different port or an empty one is a different URL for the origin: kept apart
    expect(new Set([primaryKey('h', '/a'), primaryKey('h:', '/a'), primaryKey('h:80', '/a'), primaryKey('h.', '/a')]).size).toBe(4);
  });
});

describe('Host at receive (items 1 and 2, RFC 9110 §7.2)', () => {
  it('a Host with a path in it is a 400, and never shares an entry with the URL it imitates', async () => {
    const o = await startEcho();
    h = await startHarness({ config: { backends: [{ name: 'echo', url: o.url }] } });
    const poison = await raw('GET /poison2 HTTP/1.1\r\nHost: victim.example/poison1\r\nConnection: close\r\n\r\n');
    expect(poison.status).toBe(400);
    expect(poison.body).toMatch(/Invalid Host/);
    expect(o.seen).toHaveLength(0);
    const victim = await raw('GET /poison1/poison2 HTTP/1.1\r\nHost: victim.example\r\nConnection: close\r\n\r\n');
    expect(victim.status).toBe(200);
    expect(victim.body).toBe('host=victim.example url=/poison1/poison2');
    expect(victim.headers['cache-status']).not.toMatch(/hit/);
  });

  it('answers 400 to invalid Host values and serves valid ones', async () => {
    const o = await startEcho();
    h = await startHarness({ config: { backends: [{ name: 'echo', url: o.url }] } });
    for (const bad of ['a b', 'user@victim.example', 'victim.example?x', 'victim.example#x', 'a:b', 'a:70000', '[::1', ':80']) {
      const r = await raw(`GET /x HTTP/1.1\r\nHost: ${bad}\r\nConnection: close\r\n\r\n`);
      expect(r.status, bad).toBe(400);
    }
    expect(o.seen).toHaveLength(0);
    for (const good of ['Site.Example', 'site.example:8080', '[::1]:6081', '10.0.0.1']) {
      const r = await raw(`GET /ok HTTP/1.1\r\nHost: ${good}\r\nConnection: close\r\n\r\n`);
      expect(r.status, good).toBe(200);
    }
    expect(o.seen.map((s) => s.host)).toEqual(['Site.Example', 'site.example:8080', '[::1]:6081', '10.0.0.1']);
  });

  it('two Host fields are a 400 at receive, the origin is not asked', async () => {
    const o = await startEcho();
    h = await startHarness({ config: { backends: [{ name: 'echo', url: o.url }] } });
    const r = await raw('GET /two HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nConnection: close\r\n\r\n');
    expect(r.status).toBe(400);
    expect(r.body).toMatch(/More than one Host/);
    expect(r.headers['cache-status']).toBeTruthy();
    const same = await raw('GET /two HTTP/1.1\r\nHost: a.example\r\nhost: a.example\r\nConnection: close\r\n\r\n');
    expect(same.status).toBe(400);
    expect(o.seen).toHaveLength(0);
  });
});

describe('Connection tokens (item 3, RFC 9110 §7.6.1)', () => {
  it('`Connection: host` does not strip Host: the origin sees the Host the answer is stored under', async () => {
    const o = await startEcho();
    h = await startHarness({ config: { backends: [{ name: 'echo', url: o.url }] } });
    const a = await raw('GET /page HTTP/1.1\r\nHost: site-a.example\r\nConnection: host, close\r\n\r\n');
    expect(a.status).toBe(200);
    expect(o.seen[0]!.host).toBe('site-a.example');
    expect(a.body).toBe('host=site-a.example url=/page');
    // and a normal visitor of that host gets the same (now cached) page, not the origin's default host
    const b = await raw('GET /page HTTP/1.1\r\nHost: site-a.example\r\nConnection: close\r\n\r\n');
    expect(b.body).toBe('host=site-a.example url=/page');
  });

  it('never strips Content-Length, Authorization or Cookie; other named fields are stripped', async () => {
    const o = await startEcho();
    h = await startHarness({ config: { backends: [{ name: 'echo', url: o.url }] } });
    const r = await raw(
      'POST /form HTTP/1.1\r\nHost: site.example\r\nConnection: close, content-length, authorization, cookie, x-hop\r\n' +
        'Authorization: Bearer t\r\nCookie: s=1\r\nX-Hop: gone\r\nContent-Length: 5\r\n\r\n',
      'hello',
    );
    expect(r.status).toBe(200);
    const seen = o.seen[0]!;
    expect([seen.headers['content-length'], seen.headers['authorization'], seen.headers['cookie'], seen.headers['x-hop']]).toEqual(['5', 'Bearer t', 's=1', undefined]);
    expect(seen.bodyBytes).toBe(5);
  });

  it('a field removed by Connection is removed for the cache too: no variant is stored under a value the origin never saw', async () => {
    const o = await startEcho();
    h = await startHarness({ config: { backends: [{ name: 'echo', url: o.url }] } });
    const a = await raw('GET /device HTTP/1.1\r\nHost: site.example\r\nConnection: x-device, close\r\nX-Device: mobile\r\n\r\n');
    expect(a.body).toBe('device=none');
    const mobile = await raw('GET /device HTTP/1.1\r\nHost: site.example\r\nX-Device: mobile\r\nConnection: close\r\n\r\n');
    expect(mobile.body).toBe('device=mobile');
    const none = await raw('GET /device HTTP/1.1\r\nHost: site.example\r\nConnection: close\r\n\r\n');
    expect(none.body).toBe('device=none');
    expect(none.headers['cache-status']).toMatch(/hit/);
  });
});

describe('Transfer-Encoding Lacquer would have to guess about (item 5, RFC 9112 §6.1)', () => {
  it('501 for a coding other than chunked, 400 for Transfer-Encoding in HTTP/1.0; the connection is closed and the origin not asked', async () => {
    const o = await startEcho();
    h = await startHarness({ config: { backends: [{ name: 'echo', url: o.url }] } });
    const chunkedBody = '5\r\nhello\r\n0\r\n\r\n';
    // No `Connection: close`: the proxy must close by itself, since the body's end is unknown.
    const cases: [string, number][] = [
      ['POST /te HTTP/1.1\r\nHost: site.example\r\nTransfer-Encoding: identity, chunked\r\n\r\n', 501],
      ['POST /te HTTP/1.1\r\nHost: site.example\r\nTransfer-Encoding: gzip\r\n\r\n', 501],
      ['POST /te HTTP/1.0\r\nHost: site.example\r\nTransfer-Encoding: chunked\r\n\r\n', 400],
    ];
    for (const [head, want] of cases) {
      const started = performance.now();
      const r = await raw(head, chunkedBody);
      expect(r.status, head).toBe(want);
      expect(r.headers['connection'], head).toBe('close');
      // closed by the proxy, not by the test client's 2 s guard
      expect(performance.now() - started, head).toBeLessThan(1900);
    }
    expect(o.seen).toHaveLength(0);
    const ok = await raw('POST /te HTTP/1.1\r\nHost: site.example\r\nTransfer-Encoding: Chunked\r\nConnection: close\r\n\r\n', chunkedBody);
    expect(ok.status).toBe(200);
    expect(o.seen.map((s) => s.bodyBytes)).toEqual([5]);
  });
});

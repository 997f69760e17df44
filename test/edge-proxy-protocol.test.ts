// PROXY protocol v1/v2 (HAProxy's doc/proxy-protocol.txt) on listeners that expect it: the client address
// from the load balancer reaches the log and X-Forwarded-For; connections without a header are refused.
import net from 'node:net';
import tls from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { parseProxyHeader } from '../src/server/proxy-protocol.ts';
import { filePki, startEdge, type Edge } from './edge-helpers.ts';

let e: Edge | undefined;
const pki = filePki();
afterEach(async () => {
  await e?.close();
  e = undefined;
});

const origin = (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => {
  res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'no-store' });
  res.end(`xff=${String(req.headers['x-forwarded-for'])}`);
};

function v2(family: 'IPv4' | 'IPv6', src: string, sport: number, command = 0x21): Buffer {
  const sig = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
  const addr = family === 'IPv4' ? Buffer.alloc(12) : Buffer.alloc(36);
  if (family === 'IPv4') {
    Buffer.from(src.split('.').map(Number)).copy(addr, 0);
    Buffer.from([127, 0, 0, 1]).copy(addr, 4);
    addr.writeUInt16BE(sport, 8);
    addr.writeUInt16BE(443, 10);
  } else {
    const full = src.replace('::', `:${'0:'.repeat(8 - src.split(':').filter(Boolean).length)}`).split(':').filter(Boolean);
    full.forEach((g, i) => addr.writeUInt16BE(parseInt(g, 16), i * 2));
    addr.writeUInt16BE(sport, 32);
    addr.writeUInt16BE(443, 34);
  }
  const head = Buffer.from([command, family === 'IPv4' ? 0x11 : 0x21, 0, 0]);
  head.writeUInt16BE(addr.length, 2);
  return Buffer.concat([sig, head, addr]);
}

/** One raw HTTP/1.1 exchange after `preamble`; resolves with what came back ('' when the proxy closed). */
function exchange(port: number, preamble: Buffer | string, path = '/who'): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.write(preamble);
      s.write(`GET ${path} HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n`);
    });
    let out = '';
    s.on('data', (d: Buffer) => (out += d.toString()));
    s.on('close', () => resolve(out));
    s.on('error', () => undefined);
  });
}

describe('PROXY protocol', () => {
  it('parses v1 and v2 headers, and says what is wrong with others', () => {
    expect(parseProxyHeader(Buffer.from('PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\nGET'))).toEqual({ header: { kind: 'proxied', address: '203.0.113.7', port: 51234, family: 'IPv4' }, length: 43 });
    expect(parseProxyHeader(Buffer.from('PROXY TCP6 2001:db8::7 ::1 51234 443\r\n'))).toMatchObject({ header: { address: '2001:db8::7', family: 'IPv6' } });
    expect(parseProxyHeader(Buffer.from('PROXY UNKNOWN\r\n'))).toEqual({ header: { kind: 'local' }, length: 15 });
    expect(parseProxyHeader(Buffer.from('PROXY TCP4 203.0.1'))).toEqual({ need: true });
    expect(parseProxyHeader(Buffer.from('PROXY TCP4 999.0.0.1 10.0.0.1 1 2\r\n'))).toHaveProperty('error');
    expect(parseProxyHeader(Buffer.from('GET / HTTP/1.1\r\n'))).toEqual({ error: 'no PROXY protocol header' });
    expect(parseProxyHeader(v2('IPv4', '198.51.100.9', 40000))).toEqual({ header: { kind: 'proxied', address: '198.51.100.9', port: 40000, family: 'IPv4' }, length: 28 });
    expect(parseProxyHeader(v2('IPv6', '2001:db8::42', 40001))).toMatchObject({ header: { address: '2001:db8::42', port: 40001 } });
    expect(parseProxyHeader(v2('IPv4', '198.51.100.9', 1, 0x20))).toEqual({ header: { kind: 'local' }, length: 28 });
    expect(parseProxyHeader(v2('IPv4', '198.51.100.9', 1).subarray(0, 20))).toEqual({ need: true });
  });

  it('v1 and v2: the client address from the load balancer is in X-Forwarded-For and the access log', async () => {
    e = await startEdge(origin, { listen: [{ address: '127.0.0.1:0', proxy_protocol: true }] });
    const p = e.proxy.listeners[0]!.port;
    expect(await exchange(p, 'PROXY TCP4 203.0.113.7 127.0.0.1 51234 6081\r\n')).toMatch(/xff=203\.0\.113\.7(\r|$)/);
    expect(await exchange(p, v2('IPv4', '198.51.100.9', 40000))).toMatch(/xff=198\.51\.100\.9(\r|$)/);
    expect(await exchange(p, v2('IPv6', '2001:db8::42', 40001))).toMatch(/xff=2001:db8::42(\r|$)/);
    // A LOCAL command (the balancer's own health check) keeps the socket's address.
    expect(await exchange(p, v2('IPv4', '198.51.100.9', 1, 0x20))).toMatch(/xff=127\.0\.0\.1(\r|$)/);
    await expect.poll(() => e!.log.access().map((l) => l.client)).toEqual(['203.0.113.7', '198.51.100.9', '2001:db8::42', '127.0.0.1']);
  });

  it('a listener that expects the header refuses connections without it; nothing reaches the origin', async () => {
    e = await startEdge(origin, { listen: [{ address: '127.0.0.1:0', proxy_protocol: true }] });
    const p = e.proxy.listeners[0]!.port;
    expect(await exchange(p, '')).toBe('');
    expect(await exchange(p, 'PROXY TCP4 not-an-ip 127.0.0.1 1 2\r\n')).toBe('');
    expect(e.count()).toBe(0);
    expect(e.log.lines.filter((l) => /connection refused: (no PROXY protocol header|malformed PROXY v1 address)/.test(String(l.msg)))).toHaveLength(2);
    // And a listener that does not expect it does not read one: the line is a malformed request.
    const plain = await startEdge(origin);
    try {
      expect(await exchange(plain.proxy.listeners[0]!.port, 'PROXY TCP4 203.0.113.7 127.0.0.1 51234 6081\r\n')).toMatch(/^HTTP\/1\.1 4\d\d/);
    } finally {
      await plain.close();
    }
  });

  it('PROXY header, then TLS and HTTP/2: the address survives the handshake', async () => {
    e = await startEdge(origin, { listen: [{ address: '127.0.0.1:0', proxy_protocol: true, tls: pki().issue('pp', ['a.test']) }] });
    const p = e.proxy.listeners[0]!.port;
    const raw = net.connect(p, '127.0.0.1');
    await new Promise((r) => raw.once('connect', r));
    raw.write('PROXY TCP4 192.0.2.44 127.0.0.1 5555 443\r\n');
    const http2 = await import('node:http2');
    const c = http2.connect(`https://a.test:${p}`, { createConnection: () => tls.connect({ socket: raw, servername: 'a.test', ca: pki().caPem, ALPNProtocols: ['h2'] }) });
    try {
      const body = await new Promise<string>((resolve, reject) => {
        const req = c.request({ ':path': '/who' });
        let b = '';
        req.setEncoding('utf8');
        req.on('data', (d: string) => (b += d));
        req.on('end', () => resolve(b));
        req.on('error', reject);
      });
      expect(body).toBe('xff=192.0.2.44');
    } finally {
      c.destroy();
    }
    await expect.poll(() => e!.log.access()[0]).toMatchObject({ client: '192.0.2.44', protocol: 'HTTP/2.0' });
  });
});

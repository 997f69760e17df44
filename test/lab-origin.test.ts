import { afterEach, describe, expect, it } from 'vitest';
import http from 'node:http';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';
import { startOrigin } from '../src/lab/origin.ts';
import type { Behaviour, Origin, OriginOptions } from '../src/lab/origin.ts';
import { checksum, verifyChecksum } from '../src/lab/checksum.ts';
import { defaultBody } from '../src/lab/origin-behaviours.ts';

const origins: Origin[] = [];
const agents: Agent[] = [];

async function origin(opts?: OriginOptions): Promise<Origin> {
  const o = await startOrigin(opts);
  origins.push(o);
  return o;
}

function agent(opts?: Agent.Options): Agent {
  const a = new Agent(opts);
  agents.push(a);
  return a;
}

afterEach(async () => {
  await Promise.all(origins.splice(0).map((o) => o.close()));
  await Promise.all(agents.splice(0).map((a) => a.destroy()));
});

const hdr = (b: Behaviour): Record<string, string> => ({ 'x-lab-behaviour': JSON.stringify(b) });

async function get(url: string, opts: Parameters<typeof request>[1] = {}) {
  const started = performance.now();
  const res = await request(url, { dispatcher: agent(), ...opts });
  const body = Buffer.from(await res.body.arrayBuffer());
  return { status: res.statusCode, headers: res.headers, body, ms: performance.now() - started };
}

/** node:http GET that records what arrived: head, body bytes, and how the response ended. */
function rawGet(url: string, headers: Record<string, string> = {}, watchMs = 0) {
  return new Promise<{ head?: http.IncomingMessage; bytes: number; complete: boolean; error?: NodeJS.ErrnoException; lastByteAt: number }>((resolve) => {
    const out: { head?: http.IncomingMessage; bytes: number; complete: boolean; error?: NodeJS.ErrnoException; lastByteAt: number } =
      { bytes: 0, complete: false, lastByteAt: 0 };
    const req = http.get(url, { headers, agent: false }, (res) => {
      out.head = res;
      res.on('data', (c: Buffer) => { out.bytes += c.length; out.lastByteAt = performance.now(); });
      res.on('error', (e: NodeJS.ErrnoException) => { out.error = e; });
      res.on('close', () => { out.complete = res.complete; resolve(out); });
      if (watchMs > 0) setTimeout(() => { out.complete = res.complete; req.destroy(); resolve(out); }, watchMs);
    });
    req.on('error', (e: NodeJS.ErrnoException) => { out.error = e; resolve(out); });
  });
}

describe('lab origin: normal responses', () => {
  it('serves a deterministic body with checksum, length, date, path and served count', async () => {
    const o = await origin();
    const a = await get(`${o.url}/a/b?q=1`);
    expect(a.status).toBe(200);
    expect(a.body.length).toBe(1024);
    expect(a.headers['content-length']).toBe('1024');
    expect(a.headers['x-lab-checksum']).toBe(checksum(a.body));
    expect(verifyChecksum(a.headers['x-lab-checksum'], a.body)).toBe(true);
    expect(a.body.equals(defaultBody('/a/b?q=1'))).toBe(true);
    expect(typeof a.headers.date).toBe('string');
    expect(a.headers['x-lab-path']).toBe('/a/b');
    expect(a.headers['x-lab-served']).toBe('1');
    const b = await get(`${o.url}/a/b?q=1`);
    expect(b.body.equals(a.body)).toBe(true);
    expect(b.headers['x-lab-served']).toBe('2');

    o.set('/big', { kind: 'normal', bodySize: 100_000, cacheControl: 'max-age=60', headers: { 'X-Custom': 'yes' } });
    const big = await get(`${o.url}/big`);
    expect(big.body.length).toBe(100_000);
    expect(big.headers['cache-control']).toBe('max-age=60');
    expect(big.headers['x-custom']).toBe('yes');
    expect(verifyChecksum(big.headers['x-lab-checksum'], big.body)).toBe(true);

    o.set('/lit', { kind: 'normal', status: 404, body: 'nope' });
    const lit = await get(`${o.url}/lit`);
    expect(lit.status).toBe(404);
    expect(lit.body.toString()).toBe('nope');
    expect(lit.headers['x-lab-checksum']).toBe(checksum(Buffer.from('nope')));
  });

  it('answers HEAD without a body and reads request bodies fully', async () => {
    const o = await origin();
    const h = await get(`${o.url}/h`, { method: 'HEAD' });
    expect(h.status).toBe(200);
    expect(h.headers['content-length']).toBe('1024');
    expect(h.body.length).toBe(0);
    const p = await get(`${o.url}/p`, { method: 'POST', body: Buffer.alloc(70_000, 1) });
    expect(p.status).toBe(200);
    expect(o.requests.find((r) => r.path === '/p')?.bodyBytes).toBe(70_000);
  });

  it('answers conditional requests with 304 (RFC 9110 §13)', async () => {
    const lm = new Date(Date.UTC(2024, 0, 1)).toUTCString();
    const o = await origin({ behaviours: { '/e': { kind: 'normal', etag: '"v1"', lastModified: lm, cacheControl: 'max-age=1' } } });
    const url = `${o.url}/e`;
    const m = await get(url, { headers: { 'if-none-match': '"v0", W/"v1"' } });
    expect(m.status).toBe(304);
    expect(m.body.length).toBe(0);
    expect(m.headers.etag).toBe('"v1"');
    expect(m.headers['cache-control']).toBe('max-age=1');
    expect((await get(url, { headers: { 'if-none-match': '*' } })).status).toBe(304);
    expect((await get(url, { headers: { 'if-none-match': '"v2"' } })).status).toBe(200);
    // If-None-Match takes precedence over If-Modified-Since
    expect((await get(url, { headers: { 'if-none-match': '"v2"', 'if-modified-since': lm } })).status).toBe(200);
    expect((await get(url, { headers: { 'if-modified-since': lm } })).status).toBe(304);
    expect((await get(url, { headers: { 'if-modified-since': new Date(Date.UTC(2025, 0, 1)).toUTCString() } })).status).toBe(304);
    expect((await get(url, { headers: { 'if-modified-since': new Date(Date.UTC(2023, 0, 1)).toUTCString() } })).status).toBe(200);
    expect((await get(url, { headers: { 'if-modified-since': 'garbage' } })).status).toBe(200);
  });
});

describe('lab origin: faults', () => {
  it('hang: the client times out without headers', async () => {
    const o = await origin({ behaviours: { '*': { kind: 'hang' } } });
    const err = await get(`${o.url}/h`, { headersTimeout: 250 }).catch((e: unknown) => e);
    expect((err as { code?: string }).code).toBe('UND_ERR_HEADERS_TIMEOUT');
    expect(o.count('/h')).toBe(1);
  });

  it('slow: first byte delayed by a fixed time or a uniform distribution', async () => {
    const o = await origin({ seed: 7 });
    const fixed = await get(`${o.url}/s`, { headers: hdr({ kind: 'slow', firstByteMs: 200 }) });
    expect(fixed.status).toBe(200);
    expect(fixed.ms).toBeGreaterThanOrEqual(190);
    const b: Behaviour = { kind: 'slow', firstByteMs: { minMs: 100, maxMs: 200 }, then: { bodySize: 10 } };
    const runs = await Promise.all([0, 1, 2, 3, 4].map(() => get(`${o.url}/d`, { headers: hdr(b) })));
    for (const r of runs) {
      expect(r.ms).toBeGreaterThanOrEqual(95);
      expect(r.ms).toBeLessThan(600);
      expect(r.body.length).toBe(10);
    }
  });

  it('stall: headers and part of the body, then no more bytes', async () => {
    const o = await origin({ behaviours: { '/st': { kind: 'stall', afterBytes: 100 } } });
    const r = await rawGet(`${o.url}/st`, {}, 500);
    expect(r.head?.statusCode).toBe(200);
    expect(r.head?.headers['content-length']).toBe('1024');
    expect(r.bytes).toBe(100);
    expect(r.complete).toBe(false);
    expect(performance.now() - r.lastByteAt).toBeGreaterThan(200);
  });

  it('stall with resumeAfterMs: a slow but complete body', async () => {
    const o = await origin();
    const r = await get(`${o.url}/sr`, { headers: hdr({ kind: 'stall', afterBytes: 10, resumeAfterMs: 150 }) });
    expect(r.ms).toBeGreaterThanOrEqual(140);
    expect(r.body.length).toBe(1024);
    expect(verifyChecksum(r.headers['x-lab-checksum'], r.body)).toBe(true);
  });

  it('reset-before-headers: connection reset with no headers', async () => {
    const o = await origin({ behaviours: { '*': { kind: 'reset-before-headers' } } });
    const err = await get(`${o.url}/r`).catch((e: unknown) => e);
    expect(['ECONNRESET', 'UND_ERR_SOCKET']).toContain((err as { code?: string }).code);
    const raw = await rawGet(`${o.url}/r`);
    expect(raw.head).toBeUndefined();
    expect(raw.error?.code).toBe('ECONNRESET');
  });

  it('reset-mid-body: headers arrive, body shorter than Content-Length', async () => {
    const o = await origin({ behaviours: { '*': { kind: 'reset-mid-body', afterBytes: 300, then: { bodySize: 5000 } } } });
    const r = await rawGet(`${o.url}/rm`);
    expect(r.head?.statusCode).toBe(200);
    expect(r.head?.headers['content-length']).toBe('5000');
    expect(r.bytes).toBe(300);
    expect(r.complete).toBe(false);
    const res = await request(`${o.url}/rm`, { dispatcher: agent() });
    expect(res.statusCode).toBe(200);
    const err = await res.body.arrayBuffer().catch((e: unknown) => e);
    expect(['ECONNRESET', 'UND_ERR_SOCKET']).toContain((err as { code?: string }).code);
  });

  it('garbage: the client fails to parse the response', async () => {
    const o = await origin({ behaviours: { '*': { kind: 'garbage' } } });
    const err = await get(`${o.url}/g`).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/HTTP/);
    const raw = await rawGet(`${o.url}/g`);
    expect(raw.head).toBeUndefined();
    expect(raw.error?.code).toMatch(/^HPE_/);
  });

  it('huge-headers: a valid response with a head larger than requested', async () => {
    const o = await origin({ behaviours: { '*': { kind: 'huge-headers', bytes: 64 * 1024 } } });
    const head = await new Promise<string>((resolve, reject) => {
      const s = net.connect(o.port, '127.0.0.1', () => s.write('GET /hh HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
      let buf = Buffer.alloc(0);
      s.on('data', (c: Buffer) => { buf = Buffer.concat([buf, c]); });
      s.on('end', () => resolve(buf.toString('latin1')));
      s.on('error', reject);
    });
    const end = head.indexOf('\r\n\r\n');
    expect(head.startsWith('HTTP/1.1 200')).toBe(true);
    expect(end).toBeGreaterThan(64 * 1024);
    expect(head.length - end - 4).toBe(1024);
    // undici's default 16 KiB limit refuses it; a bigger limit accepts it
    const err = await get(`${o.url}/hh`).catch((e: unknown) => e);
    expect((err as { code?: string }).code).toBe('UND_ERR_HEADERS_OVERFLOW');
    const ok = await request(`${o.url}/hh`, { dispatcher: agent({ maxHeaderSize: 128 * 1024 }) });
    expect(ok.statusCode).toBe(200);
    await ok.body.dump();
  });

  it('error: 503 by default; probability 0.5 over 200 requests gives 60..140 errors', async () => {
    const o = await origin();
    const e = await get(`${o.url}/e`, { headers: hdr({ kind: 'error' }) });
    expect(e.status).toBe(503);
    expect(verifyChecksum(e.headers['x-lab-checksum'], e.body)).toBe(true);
    expect((await get(`${o.url}/e`, { headers: hdr({ kind: 'error', status: 500 }) })).status).toBe(500);

    o.set('/p', { kind: 'error', probability: 0.5, otherwise: { bodySize: 16 } });
    const a = agent({ connections: 20 });
    let errors = 0;
    for (let batch = 0; batch < 10; batch++) {
      const rs = await Promise.all(Array.from({ length: 20 }, async () => {
        const r = await request(`${o.url}/p`, { dispatcher: a });
        await r.body.dump();
        return r.statusCode;
      }));
      for (const s of rs) {
        expect([200, 503]).toContain(s);
        if (s === 503) errors++;
      }
    }
    expect(o.count('/p')).toBe(200);
    expect(errors).toBeGreaterThanOrEqual(60);
    expect(errors).toBeLessThanOrEqual(140);
  });

  it('capacity: the (capacity+1)th concurrent request is slowed, beyond failAbove 503', async () => {
    const o = await origin({ behaviours: { '/c': { kind: 'capacity', capacity: 2, slowMs: 1500, failAbove: 3, then: { delayMs: 150 } } } });
    const rs = await Promise.all(Array.from({ length: 4 }, () => get(`${o.url}/c`)));
    const byLoad = rs.sort((x, y) => Number(x.headers['x-lab-load']) - Number(y.headers['x-lab-load']));
    expect(byLoad.map((r) => r.headers['x-lab-load'])).toEqual(['1', '2', '3', '4']);
    expect(byLoad.map((r) => r.status)).toEqual([200, 200, 200, 503]);
    // Wide margins: a loaded CI machine can add hundreds of ms to any request, never 1.5 s of slowing.
    expect(byLoad[0].ms).toBeLessThan(1000);
    expect(byLoad[1].ms).toBeLessThan(1000);
    expect(byLoad[2].ms).toBeGreaterThanOrEqual(1640); // 150 + 1500
    expect(byLoad[3].ms).toBeLessThan(1000);
    // alone again: not slowed
    const solo = await get(`${o.url}/c`);
    expect(solo.headers['x-lab-load']).toBe('1');
    expect(solo.ms).toBeLessThan(1000);
  });
});

describe('lab origin: connections', () => {
  it('keepAliveTimeoutMs: an idle keep-alive socket is closed by the server after ~300ms', async () => {
    const o = await origin({ keepAliveTimeoutMs: 300 });
    const idleMs = await new Promise<number>((resolve, reject) => {
      const s = net.connect(o.port, '127.0.0.1', () => s.write('GET /k HTTP/1.1\r\nHost: x\r\n\r\n'));
      let buf = '';
      let answeredAt = 0;
      s.on('data', (c: Buffer) => {
        buf += c.toString('latin1');
        const end = buf.indexOf('\r\n\r\n');
        if (end >= 0 && buf.length - end - 4 >= 1024 && answeredAt === 0) answeredAt = performance.now();
      });
      s.on('close', () => (answeredAt ? resolve(performance.now() - answeredAt) : reject(new Error('closed before the answer'))));
      s.on('error', reject);
    });
    expect(idleMs).toBeGreaterThanOrEqual(250);
    expect(idleMs).toBeLessThan(1000);
  });

  it('refuse → ECONNREFUSED, resume → 200 on the same port', async () => {
    const o = await origin();
    expect((await get(`${o.url}/x`)).status).toBe(200);
    const { port, url } = o;
    await o.refuse();
    const err = await get(`${url}/x`).catch((e: unknown) => e);
    expect((err as { code?: string }).code).toBe('ECONNREFUSED');
    await o.resume();
    expect(o.port).toBe(port);
    expect((await get(`${url}/x`)).status).toBe(200);
  });

  it('counts requests, logs them, and counts connections', async () => {
    const o = await origin();
    const a = agent({ connections: 1 });
    for (const p of ['/a', '/a', '/b']) {
      const r = await request(`${o.url}${p}?z=1`, { dispatcher: a, headers: { 'x-test': p } });
      await r.body.dump();
    }
    expect(o.count()).toBe(3);
    expect(o.count('/a')).toBe(2);
    expect(o.count('/b')).toBe(1);
    expect(o.count('/nope')).toBe(0);
    expect(o.connections()).toBe(1);
    expect(o.requests.map((r) => [r.method, r.path, r.query, r.socketRequestIndex])).toEqual([
      ['GET', '/a', 'z=1', 0], ['GET', '/a', 'z=1', 1], ['GET', '/b', 'z=1', 2],
    ]);
    expect(o.requests[0].headers['x-test']).toBe('/a');
    expect(o.requests[0].at).toBeGreaterThan(0);
    o.reset();
    expect(o.count()).toBe(0);
    expect(o.requests).toHaveLength(0);
    expect(o.connections()).toBe(0);
  });

  it('control endpoint: PUT behaviour, GET stats, POST reset; not counted', async () => {
    const o = await origin();
    await get(`${o.url}/x`);
    const put = await get(`${o.url}/__lab/behaviour?path=/x`, { method: 'PUT', body: JSON.stringify({ kind: 'error', status: 502 }) });
    expect(put.status).toBe(200);
    expect((await get(`${o.url}/x`)).status).toBe(502);
    expect((await get(`${o.url}/y`)).status).toBe(200);
    const bad = await get(`${o.url}/__lab/behaviour?path=/x`, { method: 'PUT', body: '{"kind":"explode"}' });
    expect(bad.status).toBe(400);
    const stats = JSON.parse((await get(`${o.url}/__lab/stats`)).body.toString());
    expect(stats).toMatchObject({ total: 3, paths: { '/x': 2, '/y': 1 } });
    expect((await get(`${o.url}/__lab/reset`, { method: 'POST' })).status).toBe(200);
    expect(o.count()).toBe(0);
    expect(JSON.parse((await get(`${o.url}/__lab/stats`)).body.toString()).total).toBe(0);
    expect(o.count()).toBe(0);
    // per-request behaviour header overrides the configured one; an invalid one is a 400
    expect((await get(`${o.url}/x`, { headers: hdr({ kind: 'normal', status: 201 }) })).status).toBe(201);
    expect((await get(`${o.url}/x`, { headers: { 'x-lab-behaviour': '{nope' } })).status).toBe(400);
    expect(() => o.set('/x', { kind: 'capacity' } as unknown as Behaviour)).toThrow(/capacity/);
  });

  it('close() ends hanging sockets and timers so the process can exit', async () => {
    const script = `
      import { startOrigin } from ${JSON.stringify(fileURLToPath(new URL('../src/lab/origin.ts', import.meta.url)))};
      import http from 'node:http';
      const o = await startOrigin({ behaviours: { '/hang': { kind: 'hang' }, '/slow': { kind: 'slow', firstByteMs: 60000 },
        '/stall': { kind: 'stall', afterBytes: 1, resumeAfterMs: 60000 } } });
      const agent = new http.Agent({ keepAlive: true });
      for (const p of ['/hang', '/slow', '/stall', '/idle']) http.get(o.url + p, { agent }, (r) => r.resume()).on('error', () => {});
      await new Promise((r) => setTimeout(r, 200));
      await o.close();
      agent.destroy();
      console.log('closed');
    `;
    const started = performance.now();
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { out += c.toString(); });
    const code = await new Promise<number | null>((resolve) => {
      const t = setTimeout(() => { child.kill('SIGKILL'); resolve(null); }, 5000);
      child.on('exit', (c) => { clearTimeout(t); resolve(c); });
    });
    expect(out).toContain('closed');
    expect(code).toBe(0);
    expect(performance.now() - started).toBeLessThan(4000);
  });
});

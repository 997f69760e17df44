// Issue 11, items 4 and 6: the client side of a response. A malformed pipelined request must never put
// bytes inside the response before it, and a client that stops reading is disconnected after
// timeouts.client_send (nginx's send_timeout), the origin fetch going on only for the cache's sake.
import http from 'node:http';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { defaultBody } from '../src/lab/origin.ts';
import { startHarness, sleep, type Harness } from './helpers.ts';

let h: Harness | undefined;
let origin: http.Server | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
  if (origin) {
    origin.closeAllConnections();
    await new Promise((r) => origin!.close(r));
    origin = undefined;
  }
});

const MiB = 1024 * 1024;
const port = () => Number(new URL(h!.url).port);

type Conversation = { data: Buffer; closedByServer: boolean };

/** Writes `text` on one connection and reads until the server closes it (or `guardMs`, then `closedByServer` is false). */
function converse(text: string, guardMs = 20_000): Promise<Conversation> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let guarded = false;
    const sock = net.connect(port(), '127.0.0.1', () => sock.write(text));
    const t = setTimeout(() => {
      guarded = true;
      sock.destroy();
    }, guardMs);
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('error', () => undefined);
    sock.on('close', () => {
      clearTimeout(t);
      resolve({ data: Buffer.concat(chunks), closedByServer: !guarded });
    });
  });
}

/** Splits consecutive Content-Length-framed responses; what follows the last complete one is `rest`. */
function responses(data: Buffer): { responses: { status: number; head: string; body: Buffer }[]; rest: Buffer } {
  const out: { status: number; head: string; body: Buffer }[] = [];
  let off = 0;
  for (;;) {
    const end = data.indexOf('\r\n\r\n', off);
    if (end < 0) break;
    const head = data.subarray(off, end).toString('latin1');
    const len = /\r\ncontent-length: *(\d+)/i.exec(head);
    if (!len || end + 4 + Number(len[1]) > data.length) break;
    out.push({ status: Number(head.split(' ')[1]), head, body: data.subarray(end + 4, end + 4 + Number(len[1])) });
    off = end + 4 + Number(len[1]);
  }
  return { responses: out, rest: data.subarray(off) };
}

describe('a malformed pipelined request after a valid one (item 4, RFC 9112 §9.3.2)', () => {
  it('a bad request line during a 20 MiB response: the body arrives intact, then the connection closes', async () => {
    h = await startHarness({ origins: [{ behaviours: { '/big': { kind: 'normal', bodySize: 20 * MiB, cacheControl: 'no-store' } } }] });
    const c = await converse('GET /big HTTP/1.1\r\nHost: site.example\r\n\r\nFOO /bar HTTP/1.1\r\nHost: site.example\r\n\r\n');
    expect(c.closedByServer).toBe(true);
    const { responses: rs, rest } = responses(c.data);
    expect(rs.map((r) => r.status)).toEqual([200]);
    expect(rs[0]!.body.equals(defaultBody('/big', 20 * MiB))).toBe(true);
    // nothing of an error answer inside or after the body
    expect(rest.length).toBe(0);
    expect(h.origins[0]!.count()).toBe(1);
  });

  it('every valid request before the bad one is answered, in order; the last answer says Connection: close', async () => {
    h = await startHarness({ origins: [{ behaviours: { '*': { kind: 'normal', bodySize: 256 * 1024, cacheControl: 'no-store', delayMs: 50 } } }] });
    const c = await converse('GET /one HTTP/1.1\r\nHost: site.example\r\n\r\nGET /two HTTP/1.1\r\nHost: site.example\r\n\r\nGET /three HTTP/9.9 x\r\n\r\n');
    expect(c.closedByServer).toBe(true);
    const { responses: rs, rest } = responses(c.data);
    expect(rs.map((r) => r.status)).toEqual([200, 200]);
    expect(rs[0]!.body.equals(defaultBody('/one', 256 * 1024))).toBe(true);
    expect(rs[1]!.body.equals(defaultBody('/two', 256 * 1024))).toBe(true);
    expect(rs[1]!.head).toMatch(/\r\nconnection: close/i);
    expect(rest.length).toBe(0);
  });

  it('a CONNECT pipelined behind a pending request: the pending response completes, then the connection closes (no crash)', async () => {
    h = await startHarness({ origins: [{ behaviours: { '*': { kind: 'normal', bodySize: 1024, cacheControl: 'no-store', delayMs: 100 } } }] });
    const c = await converse('GET /first HTTP/1.1\r\nHost: site.example\r\n\r\nCONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n', 5000);
    expect(c.closedByServer).toBe(true);
    const { responses: rs, rest } = responses(c.data);
    expect(rs.map((r) => r.status)).toEqual([200]);
    expect(rest.length).toBe(0);
    expect((await h.get('/alive')).status).toBe(200);
  });

  it("a broken chunk in the request's own body: 400 and close, not a hang and not a 503 blaming the origin", async () => {
    h = await startHarness();
    const c = await converse('POST /up HTTP/1.1\r\nHost: site.example\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX\r\n0\r\n\r\n', 5000);
    expect(c.closedByServer).toBe(true);
    const { responses: rs } = responses(c.data);
    expect(rs.map((r) => r.status)).toEqual([400]);
    expect(rs[0]!.body.toString()).toMatch(/Malformed request body/);
    expect(h.proxy.ctx.pool.backends[0]!.counters.failures).toBe(0);
  });

  it('a bad request on a connection with nothing pending still gets its 400', async () => {
    h = await startHarness();
    const c = await converse('GET /ok HTTP/1.1\r\nHost: site.example\r\n\r\n', 1000);
    expect(responses(c.data).responses.map((r) => r.status)).toEqual([200]);
    const bad = await converse('FOO /bar HTTP/1.1\r\nHost: site.example\r\n\r\n');
    expect(bad.data.toString('latin1')).toMatch(/^HTTP\/1\.1 4\d\d /);
  });
});

/** An origin that streams `size` bytes with backpressure and records whether each response was cut off. */
async function startStreamingOrigin(size: number, cacheControl: string): Promise<{ url: string; served: { path: string; aborted: boolean | undefined }[] }> {
  const served: { path: string; aborted: boolean | undefined }[] = [];
  const chunk = Buffer.alloc(64 * 1024, 'y');
  origin = http.createServer((req, res) => {
    const rec = { path: req.url ?? '', aborted: undefined as boolean | undefined };
    served.push(rec);
    res.writeHead(200, { 'content-length': String(size), 'cache-control': cacheControl, 'content-type': 'application/octet-stream' });
    let sent = 0;
    const pump = () => {
      while (sent < size) {
        const n = Math.min(chunk.length, size - sent);
        sent += n;
        if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void res.once('drain', pump);
      }
      res.end();
    };
    res.on('close', () => (rec.aborted = !res.writableFinished));
    pump();
  });
  await new Promise<void>((r) => origin!.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(origin.address() as net.AddressInfo).port}`, served };
}

/**
 * A client that reads the first bytes of the response, then reads nothing for `stallMs`, then reads on
 * until the connection closes (a paused socket would not even notice the close). `received` counts every
 * byte, so a response cut off by the proxy is shorter than the whole.
 */
function stalledClient(path: string, stallMs: number, guardMs = 20_000): Promise<{ closedByServer: boolean; received: number }> {
  return new Promise((resolve) => {
    let received = 0;
    let guarded = false;
    let stalled = false;
    const sock = net.connect(port(), '127.0.0.1', () => sock.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port()}\r\n\r\n`));
    const t = setTimeout(() => {
      guarded = true;
      sock.destroy();
    }, guardMs);
    sock.on('data', (c: Buffer) => {
      received += c.length;
      if (stalled) return;
      stalled = true;
      sock.pause();
      setTimeout(() => sock.resume(), stallMs);
    });
    sock.on('error', () => undefined);
    sock.on('close', () => {
      clearTimeout(t);
      resolve({ closedByServer: !guarded, received });
    });
  });
}

describe('timeouts.client_send (item 6, nginx send_timeout)', () => {
  it('defaults to 60 s', async () => {
    h = await startHarness();
    expect(h.proxy.ctx.config.timeouts.client_send).toBe(60_000);
  });

  it('a client that stops reading a 64 MiB pass is disconnected, the origin fetch is stopped and its connection slot freed', async () => {
    const o = await startStreamingOrigin(64 * MiB, 'no-store');
    h = await startHarness({ config: { backends: [{ name: 'app', url: o.url, max_connections: 1 }], timeouts: { client_send: '1s' } } });
    const c = await stalledClient('/pass', 3000);
    expect(c.closedByServer).toBe(true);
    expect(c.received).toBeLessThan(64 * MiB);
    for (let i = 0; i < 100 && o.served[0]?.aborted === undefined; i++) await sleep(50);
    expect(o.served.map((s) => s.aborted)).toEqual([true]);
    const line = h.log.access().find((l) => l.url === '/pass')!;
    expect(line.client_gone).toBe(true);
    expect(line.client_timeout).toBe('timeouts.client_send=1000ms');
    // the one connection slot is free again: the next miss is not queued behind the reader that left
    const next = await h.get('/next');
    expect(next.status).toBe(200);
    expect(next.raw.length).toBe(64 * MiB);
  });

  it('when the object is being stored, the origin fetch goes on and the next client gets a hit', async () => {
    const o = await startStreamingOrigin(24 * MiB, 'max-age=60');
    h = await startHarness({ config: { backends: [{ name: 'app', url: o.url }], timeouts: { client_send: '1s' }, cache: { memory: '64MiB', max_object_share: 0.5 } } });
    const c = await stalledClient('/stored', 3000);
    expect(c.closedByServer).toBe(true);
    expect(c.received).toBeLessThan(24 * MiB);
    expect(h.log.access().find((l) => l.url === '/stored')!.client_timeout).toBe('timeouts.client_send=1000ms');
    for (let i = 0; i < 100 && o.served[0]?.aborted === undefined; i++) await sleep(50);
    expect(o.served.map((s) => s.aborted)).toEqual([false]);
    const next = await h.get('/stored');
    expect(next.status).toBe(200);
    expect(next.headers['cache-status']).toMatch(/hit/);
    expect(next.raw.length).toBe(24 * MiB);
    expect(o.served).toHaveLength(1);
  });

  it('a slow client that keeps reading a 32 MiB hit is not disconnected', async () => {
    const size = 32 * MiB;
    const o = await startStreamingOrigin(size, 'max-age=60');
    h = await startHarness({ config: { backends: [{ name: 'app', url: o.url }], timeouts: { client_send: '2s' }, cache: { memory: '128MiB', max_object_share: 0.5 } } });
    expect((await h.get('/slow')).raw.length).toBe(size); // now cached: delivered from memory, as fast as the client reads
    // Reads 4 MiB, pauses 300 ms, and so on: never two seconds without progress (a loaded machine has margin), ~2.5 s in all.
    const r = await new Promise<{ received: number; complete: boolean; pauses: number }>((resolve) => {
      let received = 0;
      let sinceLast = 0;
      let pauses = 0;
      const sock = net.connect(port(), '127.0.0.1', () => sock.write(`GET /slow HTTP/1.1\r\nHost: 127.0.0.1:${port()}\r\nConnection: close\r\n\r\n`));
      sock.on('data', (c: Buffer) => {
        received += c.length;
        sinceLast += c.length;
        if (sinceLast >= 4 * MiB) {
          sinceLast = 0;
          pauses++;
          sock.pause();
          setTimeout(() => sock.resume(), 300);
        }
      });
      sock.on('error', () => undefined);
      sock.on('close', () => resolve({ received, complete: received > size, pauses }));
    });
    expect(r.pauses).toBeGreaterThanOrEqual(6);
    expect(r.complete).toBe(true);
    expect(o.served).toHaveLength(1);
  });
});

// Compression (RFC 9110 §12.5.3 negotiation, §8.4 content codings): one origin fetch serves every coding,
// each decoding byte for byte to what the origin sent; origin codings are left alone or decoded; what
// must not be compressed is not.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { negotiate } from '../src/pipeline/compress.ts';
import { startEdge, type Edge } from './edge-helpers.ts';

const run = promisify(execFile);
let e: Edge | undefined;
afterEach(async () => {
  await e?.close();
  e = undefined;
});

const TEXT = Buffer.from(Array.from({ length: 400 }, (_, i) => `<p>Paragraph ${i}: Lacquer serves stale rather than failing.</p>\n`).join(''));
const GZ = zlib.gzipSync(TEXT);
const RANDOM = randomBytes(20_000);

function origin(req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse): void {
  const path = (req.url ?? '/').split('?')[0];
  const send = (type: string, body: Buffer, extra: Record<string, string> = {}) => {
    res.writeHead(200, { 'content-type': type, 'cache-control': 'max-age=60', etag: '"v1"', 'content-length': String(body.length), ...extra });
    res.end(body);
  };
  switch (path) {
    case '/text':
      return send('text/html; charset=utf-8', TEXT);
    case '/gz':
      return send('text/html; charset=utf-8', GZ, { 'content-encoding': 'gzip', vary: 'Accept-Encoding' });
    case '/small':
      return send('text/plain', Buffer.from('short and sweet\n'));
    case '/png':
      return send('image/png', TEXT);
    case '/no-transform':
      return send('text/plain', TEXT, { 'cache-control': 'max-age=60, no-transform' });
    case '/random':
      return send('text/plain', RANDOM);
    case '/pass': {
      // Streamed in pieces, without Content-Length, never stored.
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      let i = 0;
      const step = (): void => {
        if (i >= TEXT.length) {
          res.end();
          return;
        }
        res.write(TEXT.subarray(i, (i += 4096)));
        setTimeout(step, 5);
      };
      return step();
    }
    default:
      res.writeHead(404);
      res.end();
  }
}

type Got = { status: number; headers: Record<string, string | string[] | undefined>; raw: Buffer };

async function get(x: Edge, path: string, headers: Record<string, string> = {}): Promise<Got> {
  const res = await request(`${x.proxy.url}${path}`, { headers });
  return { status: res.statusCode, headers: res.headers, raw: Buffer.from(await res.body.arrayBuffer()) };
}

function decode(g: Got): Buffer {
  const ce = g.headers['content-encoding'];
  if (ce === 'br') return zlib.brotliDecompressSync(g.raw);
  if (ce === 'gzip') return zlib.gunzipSync(g.raw);
  expect(ce).toBeUndefined();
  return g.raw;
}

describe('negotiation (RFC 9110 §12.5.3)', () => {
  const offered = ['br', 'gzip'];
  it.each([
    [undefined, 'identity'],
    ['', 'identity'],
    ['gzip', 'gzip'],
    ['gzip, deflate, br', 'br'],
    ['gzip;q=0.5, br;q=0.1', 'gzip'],
    ['br;q=0, gzip;q=0.8', 'gzip'],
    ['*', 'br'],
    ['br;q=0, *', 'gzip'],
    ['*;q=0, identity', 'identity'],
    ['gzip;q=0.5, identity', 'identity'],
    ['gzip, identity;q=0', 'gzip'],
    ['x-gzip', 'gzip'],
    ['deflate, compress', 'identity'],
    ['GZIP;Q=1.0', 'gzip'],
  ])('Accept-Encoding %j → %s', (header, want) => {
    expect(negotiate(header, offered)).toBe(want);
  });
});

describe('compression', () => {
  it('one origin request serves every coding, each decoding byte for byte; Vary added, ETag weak when transformed; forms kept with the object', async () => {
    e = await startEdge(origin);
    const cases: [string | undefined, string | undefined][] = [
      ['br', 'br'],
      ['gzip', 'gzip'],
      ['gzip, deflate, br', 'br'],
      ['identity', undefined],
      [undefined, undefined],
      ['gzip;q=1, br;q=0.5', 'gzip'],
    ];
    for (const [ae, want] of cases) {
      const g = await get(e, '/text', ae === undefined ? {} : { 'accept-encoding': ae });
      expect(g.status).toBe(200);
      expect(g.headers['content-encoding'], `Accept-Encoding ${ae}`).toBe(want);
      expect(g.headers['vary']).toBe('accept-encoding');
      expect(g.headers['etag']).toBe(want ? 'W/"v1"' : '"v1"');
      expect(decode(g).equals(TEXT)).toBe(true);
      if (want) expect(g.raw.length).toBeLessThan(TEXT.length / 4);
    }
    expect(e.count('/text')).toBe(1);
    // The coded forms are made once, in the background, and then served with their length.
    await expect.poll(async () => (await get(e!, '/text', { 'accept-encoding': 'br' })).headers['content-length'], { timeout: 5000 }).toBeDefined();
    const stored = await get(e, '/text', { 'accept-encoding': 'gzip' });
    const br = await get(e, '/text', { 'accept-encoding': 'br' });
    expect(stored.headers['content-length']).toBe(String(stored.raw.length));
    expect(zlib.gunzipSync(stored.raw).equals(TEXT)).toBe(true);
    expect(zlib.brotliDecompressSync(br.raw).equals(TEXT)).toBe(true);
    // Charged to cache.memory: the identity body and both forms.
    expect(e.proxy.ctx.store.stats().bytes).toBeGreaterThanOrEqual(TEXT.length + stored.raw.length + br.raw.length);
    expect(e.proxy.ctx.store.stats().objects).toBe(1);
    expect(e.count('/text')).toBe(1);
    // A client that already has the coded form revalidates with its weak tag.
    const nm = await get(e, '/text', { 'accept-encoding': 'br', 'if-none-match': 'W/"v1"' });
    expect(nm.status).toBe(304);
  });

  it('curl --compressed gets a coding and decodes it to the original', async () => {
    e = await startEdge(origin);
    const { stdout } = await run('curl', ['-sS', '--compressed', `${e.proxy.url}/text`], { encoding: 'buffer' });
    expect(stdout.equals(TEXT)).toBe(true);
  });

  it('an origin that compressed is left alone for clients that accept its coding, and decoded for those that do not', async () => {
    e = await startEdge(origin);
    const gz = await get(e, '/gz', { 'accept-encoding': 'gzip, br' });
    expect(gz.headers['content-encoding']).toBe('gzip');
    expect(gz.raw.equals(GZ)).toBe(true); // the origin's bytes, untouched
    expect(gz.headers['etag']).toBe('"v1"');
    for (const ae of [undefined, 'identity', 'br']) {
      const plain = await get(e, '/gz', ae === undefined ? {} : { 'accept-encoding': ae });
      expect(plain.headers['content-encoding'], `Accept-Encoding ${ae}`).toBeUndefined();
      expect(plain.raw.equals(TEXT)).toBe(true);
      expect(plain.headers['etag']).toBe('W/"v1"');
      expect(plain.headers['vary']).toMatch(/accept-encoding/i);
    }
    // One fetch for all of them: the origin was asked for the codings Lacquer decodes, whatever the client sent.
    expect(e.count('/gz')).toBe(1);
    expect(e.seen[0]!.headers['accept-encoding']).toBe('br, gzip');
  });

  it('Accept-Encoding is normalised: a Vary: Accept-Encoding origin is one object, whatever the browsers send', async () => {
    e = await startEdge(origin);
    for (const ae of ['gzip', 'gzip, deflate', 'gzip, deflate, br', 'br;q=1.0, gzip;q=0.8, *;q=0.1', 'identity', 'gzip, deflate, br, zstd']) {
      expect((await get(e, '/gz', { 'accept-encoding': ae })).status).toBe(200);
    }
    expect(e.count('/gz')).toBe(1);
    expect(e.proxy.ctx.store.stats().objects).toBe(1);
  });

  it('not compressed: ranges, no-transform, small bodies, types not listed, incompressible bodies', async () => {
    e = await startEdge(origin);
    await get(e, '/text'); // stored: ranges are answered from the stored object
    const range = await get(e, '/text', { 'accept-encoding': 'br', range: 'bytes=0-99' });
    expect(range.status).toBe(206);
    expect(range.headers['content-encoding']).toBeUndefined();
    expect(range.raw.equals(TEXT.subarray(0, 100))).toBe(true);
    for (const path of ['/no-transform', '/small', '/png']) {
      const g = await get(e, path, { 'accept-encoding': 'br, gzip' });
      expect(g.headers['content-encoding'], path).toBeUndefined();
      expect(g.headers['etag']).toBe('"v1"');
    }
    expect((await get(e, '/png', { 'accept-encoding': 'gzip' })).headers['vary']).toBeUndefined();
    // Random bytes labelled text: streamed coded at first, then the stored verdict is "not worth it".
    await get(e, '/random', { 'accept-encoding': 'gzip' });
    await expect.poll(async () => (await get(e!, '/random', { 'accept-encoding': 'gzip' })).headers['content-encoding'], { timeout: 5000 }).toBeUndefined();
    const r = await get(e, '/random', { 'accept-encoding': 'br' });
    expect(r.raw.equals(RANDOM)).toBe(true);
  });

  it('pass responses are compressed as they stream, and every pass is fetched again', async () => {
    e = await startEdge(origin);
    for (const ae of ['br', 'gzip']) {
      const g = await get(e, '/pass', { 'accept-encoding': ae });
      expect(g.headers['content-encoding']).toBe(ae);
      expect(g.headers['content-length']).toBeUndefined();
      expect(g.headers['cache-status']).toMatch(/not-stored=no-store/);
      expect(decode(g).equals(TEXT)).toBe(true);
    }
    const plain = await get(e, '/pass');
    expect(plain.raw.equals(TEXT)).toBe(true);
    expect(e.count('/pass')).toBe(3);
  });

  it('compression: { enabled: false } sends every body as the origin did', async () => {
    e = await startEdge(origin, { compression: { enabled: false } });
    const g = await get(e, '/text', { 'accept-encoding': 'br, gzip' });
    expect(g.headers['content-encoding']).toBeUndefined();
    expect(g.headers['vary']).toBeUndefined();
    expect(g.raw.equals(TEXT)).toBe(true);
  });
});

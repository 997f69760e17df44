// Answers made from a stored object: HEAD (RFC 9110 §9.3.2), client conditionals (RFC 9110 §13,
// precedence §13.2.2, 304 fields §15.4.5) and ranges (RFC 9110 §14), through a real proxy.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { verifyChecksum } from '../src/lab/checksum.ts';
import { defaultBody } from '../src/lab/origin.ts';
import { startHarness, type Harness, type Reply } from './helpers.ts';

let h: Harness;
const LM = new Date(Date.now() - 3_600_000).toUTCString();
const LATER = new Date(Date.now() - 1_800_000).toUTCString();
const EARLIER = new Date(Date.now() - 7_200_000).toUTCString();

beforeEach(async () => {
  h = await startHarness({
    origins: [
      {
        behaviours: {
          '*': { kind: 'normal', cacheControl: 'max-age=60', etag: '"v1"', lastModified: LM, headers: { vary: 'Accept-Encoding' } },
          '/missing': { kind: 'normal', status: 404, cacheControl: 'max-age=60', etag: '"nf"' },
        },
      },
    ],
  });
});
afterEach(async () => {
  await h.close();
});

const cs = (r: Reply) => String(r.headers['cache-status']);

/** Stores the object at `path` and returns the origin's full reply. */
async function prime(path = '/p'): Promise<Reply> {
  const r = await h.get(path);
  expect(cs(r)).toMatch(/fwd=uri-miss; fwd-status=(200|404); stored/);
  return r;
}

describe('HEAD (RFC 9110 §9.3.2)', () => {
  it('§9.3.2: HEAD is answered from a cached GET: no body, the same header fields including Content-Length', async () => {
    const get = await prime();
    const head = await h.get('/p', {}, 'HEAD');
    expect(head.status).toBe(200);
    expect(head.raw.length).toBe(0);
    expect(head.headers['content-length']).toBe('1024');
    expect(head.headers['content-length']).toBe(get.headers['content-length']);
    for (const f of ['etag', 'last-modified', 'cache-control', 'content-type', 'vary', 'x-lab-checksum']) expect(head.headers[f], f).toBe(get.headers[f]);
    expect(cs(head)).toMatch(/^lacquer; hit/);
    expect(h.origins[0]!.count('/p')).toBe(1);
  });

  it('§9.3.2: a HEAD miss is fetched as GET and fills the cache for the next GET', async () => {
    const head = await h.get('/p', {}, 'HEAD');
    expect(head.status).toBe(200);
    expect(head.raw.length).toBe(0);
    expect(head.headers['content-length']).toBe('1024');
    expect(h.origins[0]!.requests[0]!.method).toBe('GET');
    const get = await h.get('/p');
    expect(cs(get)).toMatch(/^lacquer; hit/);
    expect(get.raw.length).toBe(1024);
    expect(verifyChecksum(get.headers['x-lab-checksum'], get.raw)).toBe(true);
    expect(h.origins[0]!.count('/p')).toBe(1);
  });
});

describe('client conditionals from cache (RFC 9110 §13.2.2)', () => {
  it('§13.1.2: If-None-Match (weak comparison) → 304 carrying ETag, Cache-Control, Date and Vary (§15.4.5)', async () => {
    const full = await prime();
    const r = await h.get('/p', { 'if-none-match': 'W/"v1"' });
    expect(r.status).toBe(304);
    expect(r.raw.length).toBe(0);
    expect(r.headers['etag']).toBe('"v1"');
    expect(r.headers['cache-control']).toBe('max-age=60');
    expect(r.headers['date']).toBe(full.headers['date']);
    expect(r.headers['vary']).toBe('Accept-Encoding');
    expect(r.headers['age']).toBeDefined();
    expect(cs(r)).toMatch(/^lacquer; hit/);
    expect(h.origins[0]!.count('/p')).toBe(1);
  });

  it('§13.1.2: If-None-Match with other tags only → full 200', async () => {
    await prime();
    const r = await h.get('/p', { 'if-none-match': '"v0", "v2"' });
    expect(r.status).toBe(200);
    expect(r.raw.length).toBe(1024);
  });

  it('§13.1.3: If-Modified-Since at or after Last-Modified → 304; before → 200', async () => {
    await prime();
    expect((await h.get('/p', { 'if-modified-since': LATER })).status).toBe(304);
    expect((await h.get('/p', { 'if-modified-since': LM })).status).toBe(304);
    expect((await h.get('/p', { 'if-modified-since': EARLIER })).status).toBe(200);
  });

  it('§13.2.2: If-None-Match takes precedence over If-Modified-Since', async () => {
    await prime();
    const r = await h.get('/p', { 'if-none-match': '"v2"', 'if-modified-since': LATER });
    expect(r.status).toBe(200);
  });

  it('§13.1.1: If-Match that does not match → 412; a matching one → 200', async () => {
    await prime();
    const r = await h.get('/p', { 'if-match': '"v2"' });
    expect(r.status).toBe(412);
    expect(r.raw.length).toBe(0);
    expect((await h.get('/p', { 'if-match': '"v1"' })).status).toBe(200);
    expect(h.origins[0]!.count('/p')).toBe(1);
  });

  it('§13.1.4: If-Unmodified-Since before Last-Modified → 412', async () => {
    await prime();
    expect((await h.get('/p', { 'if-unmodified-since': EARLIER })).status).toBe(412);
    expect((await h.get('/p', { 'if-unmodified-since': LATER })).status).toBe(200);
  });

  it('§13.2.1: preconditions are ignored when the stored response is not a 2xx (a cached 404 stays 404)', async () => {
    await prime('/missing');
    expect((await h.get('/missing', { 'if-match': '"other"' })).status).toBe(404);
    expect((await h.get('/missing', { 'if-none-match': '"nf"' })).status).toBe(404);
    expect(h.origins[0]!.count('/missing')).toBe(1);
  });

  it('§13.1.2: a HEAD with a matching If-None-Match → 304', async () => {
    await prime();
    expect((await h.get('/p', { 'if-none-match': '"v1"' }, 'HEAD')).status).toBe(304);
  });
});

describe('ranges from a cached full object (RFC 9110 §14)', () => {
  const body = defaultBody('/p', 1024);

  it('§14.1.2: bytes=first-last → 206 with Content-Range and exactly those bytes', async () => {
    await prime();
    const r = await h.get('/p', { range: 'bytes=10-19' });
    expect(r.status).toBe(206);
    expect(r.headers['content-range']).toBe('bytes 10-19/1024');
    expect(r.headers['content-length']).toBe('10');
    expect(r.raw.equals(body.subarray(10, 20))).toBe(true);
    expect(h.origins[0]!.count('/p')).toBe(1);
  });

  it('§14.1.2: a suffix range returns the last N bytes', async () => {
    await prime();
    const r = await h.get('/p', { range: 'bytes=-100' });
    expect(r.status).toBe(206);
    expect(r.headers['content-range']).toBe('bytes 924-1023/1024');
    expect(r.raw.equals(body.subarray(924))).toBe(true);
  });

  it('§15.5.17: an unsatisfiable range → 416 with Content-Range: bytes */length', async () => {
    await prime();
    const r = await h.get('/p', { range: 'bytes=2000-' });
    expect(r.status).toBe(416);
    expect(r.headers['content-range']).toBe('bytes */1024');
  });

  it('§13.1.5: If-Range that does not match → the full 200; a matching one → 206', async () => {
    await prime();
    const miss = await h.get('/p', { range: 'bytes=0-9', 'if-range': '"v0"' });
    expect(miss.status).toBe(200);
    expect(miss.raw.length).toBe(1024);
    expect(miss.headers['content-range']).toBeUndefined();
    const match = await h.get('/p', { range: 'bytes=0-9', 'if-range': '"v1"' });
    expect(match.status).toBe(206);
  });

  it('§14.2: a range on a miss is not forwarded: the proxy fetches the whole object and stores it', async () => {
    const r = await h.get('/p', { range: 'bytes=0-9' });
    expect([200, 206]).toContain(r.status);
    expect(h.origins[0]!.requests[0]!.headers['range']).toBeUndefined();
    const again = await h.get('/p', { range: 'bytes=0-9' });
    expect(again.status).toBe(206);
    expect(again.raw.equals(body.subarray(0, 10))).toBe(true);
    expect(h.origins[0]!.count('/p')).toBe(1);
  });
});

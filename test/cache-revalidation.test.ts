// Revalidation (RFC 9111 §4.3), serving stale (RFC 5861, grace; never against §4.2.4 / §5.2.2), and
// truncated bodies never stored, through a real proxy and a fake origin.
//
// Most stale objects here are stale on arrival: the origin sends an `Age` larger than `max-age`
// (§4.2.3), so the tests need no sleeps.
import { afterEach, describe, expect, it } from 'vitest';
import type { Behaviour } from '../src/lab/origin.ts';
import { verifyChecksum } from '../src/lab/checksum.ts';
import { sleep, startHarness, type Harness, type Reply } from './helpers.ts';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const cs = (r: Reply) => String(r.headers['cache-status']);
const ttl = (r: Reply) => Number(/ttl=(-?\d+)/.exec(cs(r))?.[1]);

async function start(first: Behaviour, config?: Record<string, unknown>): Promise<Harness> {
  h = await startHarness({ origins: [{ behaviours: { '/p': first } }], config });
  return h;
}
const origin = () => h!.origins[0]!;

/** Waits (bounded) until the origin has seen `n` requests for /p. */
async function untilCount(n: number): Promise<void> {
  for (let i = 0; i < 100 && origin().count('/p') < n; i++) await sleep(10);
}

/** Waits (bounded) until no background refresh runs. */
async function backgroundDone(): Promise<void> {
  for (let i = 0; i < 100 && h!.proxy.ctx.background > 0; i++) await sleep(10);
}

describe('revalidation (RFC 9111 §4.3)', () => {
  it('§4.3.1: an expired object with an ETag is revalidated with If-None-Match; a 304 refreshes it (body kept, new freshness)', async () => {
    await start({ kind: 'normal', cacheControl: 'max-age=10', etag: '"v1"', body: 'original', headers: { age: '20' } }, { cache: { stale_if_error: '0s' } });
    const a = await h!.get('/p');
    origin().set('/p', { kind: 'normal', cacheControl: 'max-age=60', etag: '"v1"', body: 'changed-but-same-etag' });
    const b = await h!.get('/p');
    expect(origin().requests[1]!.headers['if-none-match']).toBe('"v1"');
    expect(b.status).toBe(200);
    expect(b.body).toBe('original');
    expect(verifyChecksum(b.headers['x-lab-checksum'], b.raw)).toBe(true);
    expect(cs(b)).toMatch(/^lacquer; fwd=stale; fwd-status=304; ttl=(59|60); stored$/);
    expect(b.headers['cache-control']).toBe('max-age=60');
    const c = await h!.get('/p');
    expect(cs(c)).toMatch(/^lacquer; hit; ttl=(59|60)$/);
    expect(c.body).toBe(a.body);
    expect(origin().count('/p')).toBe(2);
  });

  it('§4.3.4: a 304 without Age gives the refreshed object its own age, not the stored response\'s Age', async () => {
    await start({ kind: 'normal', cacheControl: 'max-age=10', etag: '"v1"', headers: { age: '100' } }, { cache: { stale_if_error: '0s' } });
    await h!.get('/p');
    origin().set('/p', { kind: 'normal', cacheControl: 'max-age=60', etag: '"v1"' });
    const b = await h!.get('/p');
    expect(b.headers['age']).toBe('0');
    expect(ttl(b)).toBeGreaterThanOrEqual(59);
    const c = await h!.get('/p');
    expect(cs(c)).toMatch(/^lacquer; hit/);
    expect(origin().count('/p')).toBe(2);
  });

  it('§4.3.1: an object with only Last-Modified is revalidated with If-Modified-Since', async () => {
    const lm = new Date(Date.now() - 86_400_000).toUTCString();
    await start({ kind: 'normal', cacheControl: 'max-age=10', lastModified: lm, headers: { age: '20' } }, { cache: { stale_if_error: '0s' } });
    await h!.get('/p');
    origin().set('/p', { kind: 'normal', cacheControl: 'max-age=60', lastModified: lm });
    const b = await h!.get('/p');
    expect(origin().requests[1]!.headers['if-modified-since']).toBe(lm);
    expect(origin().requests[1]!.headers['if-none-match']).toBeUndefined();
    expect(cs(b)).toMatch(/fwd-status=304/);
  });

  it('§4.3.3: a 200 to the revalidation replaces the stored object', async () => {
    await start({ kind: 'normal', cacheControl: 'max-age=10', etag: '"v1"', body: 'old', headers: { age: '20' } }, { cache: { stale_if_error: '0s' } });
    await h!.get('/p');
    origin().set('/p', { kind: 'normal', cacheControl: 'max-age=60', etag: '"v2"', body: 'new' });
    const b = await h!.get('/p');
    expect(origin().requests[1]!.headers['if-none-match']).toBe('"v1"');
    expect(b.body).toBe('new');
    expect(cs(b)).toBe('lacquer; fwd=stale; fwd-status=200; stored');
    const c = await h!.get('/p');
    expect(c.body).toBe('new');
    expect(c.headers['etag']).toBe('"v2"');
    expect(cs(c)).toMatch(/^lacquer; hit/);
  });

  it('§4.3.3: a client\'s own validators are not sent upstream; the cache answers them', async () => {
    await start({ kind: 'normal', cacheControl: 'max-age=60', etag: '"v1"' });
    const r = await h!.get('/p', { 'if-none-match': '"v1"' });
    expect(origin().requests[0]!.headers['if-none-match']).toBeUndefined();
    expect(r.status).toBe(200); // a miss streams the full response; the next one gets 304 from cache
    expect((await h!.get('/p', { 'if-none-match': '"v1"' })).status).toBe(304);
  });

  it('§4.3.4: a 304 that says no-store is delivered but the stored object is dropped', async () => {
    await start({ kind: 'normal', cacheControl: 'max-age=10', etag: '"v1"', body: 'old', headers: { age: '20' } }, { cache: { stale_if_error: '0s' } });
    await h!.get('/p');
    origin().set('/p', { kind: 'normal', cacheControl: 'no-store', etag: '"v1"' });
    const b = await h!.get('/p');
    expect(b.status).toBe(200);
    expect(b.body).toBe('old');
    expect(cs(b)).toMatch(/fwd-status=304/);
    expect(cs(b)).toMatch(/detail="not-stored=no-store"/);
    expect(cs(b)).not.toMatch(/; stored/);
    const c = await h!.get('/p');
    expect(cs(c)).toMatch(/fwd=uri-miss/);
    expect(origin().requests[2]!.headers['if-none-match']).toBeUndefined();
  });
});

describe('unexpected 304 (RFC 9111 §4.3.3)', () => {
  it('§4.3.3: a 304 naming another ETag does not update the stored object, which is dropped', async () => {
    await start({ kind: 'normal', cacheControl: 'max-age=10', etag: '"v1"', body: 'old', headers: { age: '20' } }, { cache: { stale_if_error: '0s' } });
    await h!.get('/p');
    origin().set('/p', { kind: 'normal', status: 304, cacheControl: 'max-age=60', etag: '"v2"' });
    const b = await h!.get('/p');
    expect(b.status).toBe(503);
    expect(b.body).not.toContain('old');
    expect(b.headers['proxy-status']).toMatch(/^lacquer; error=http_protocol_error/);
    origin().set('/p', { kind: 'normal', cacheControl: 'max-age=60', etag: '"v2"', body: 'new' });
    const c = await h!.get('/p');
    expect(c.body).toBe('new');
    expect(cs(c)).toMatch(/fwd=uri-miss/);
    expect(origin().requests.at(-1)!.headers['if-none-match']).toBeUndefined();
  });

  it('§4.3.3: a 304 to a request that carried no validator is never passed to the client as is', async () => {
    await start({ kind: 'normal', status: 304, cacheControl: 'max-age=60' });
    const r = await h!.get('/p');
    expect(r.status).toBe(503);
    expect(r.headers['proxy-status']).toMatch(/error=http_protocol_error/);
  });
});

/** The operator's opt-in (a deviation from RFC 9111 §4.2.4, what `grace` used to do by default). */
const OPT_IN_SWR = { cache: { stale_while_revalidate: '1h' } };

describe('stale-while-revalidate (RFC 5861 §3)', () => {
  it('RFC 5861 §3: within cache.stale_while_revalidate the stale object is served at once and exactly one background fetch refreshes it', async () => {
    await start({ kind: 'normal', cacheControl: 'max-age=10', body: 'old', headers: { age: '20' } }, OPT_IN_SWR);
    await h!.get('/p');
    origin().set('/p', { kind: 'normal', cacheControl: 'max-age=60', body: 'new', delayMs: 150 });
    // The refresh takes 150 ms and brings 'new': every reply being 'old' shows none of them waited for it.
    const replies = await Promise.all(Array.from({ length: 5 }, () => h!.get('/p')));
    for (const r of replies) {
      expect(r.body).toBe('old');
      expect(cs(r)).toMatch(/^lacquer; hit; ttl=-(9|10|11); detail="stale-while-revalidate"$/);
    }
    await untilCount(2);
    await backgroundDone();
    expect(origin().count('/p')).toBe(2);
    const fresh = await h!.get('/p');
    expect(fresh.body).toBe('new');
    expect(cs(fresh)).toMatch(/^lacquer; hit; ttl=(59|60)$/);
    expect(origin().count('/p')).toBe(2);
  });

  it('RFC 5861 §3: a response stale-while-revalidate applies with the default cache.stale_while_revalidate 0', async () => {
    await start({ kind: 'normal', cacheControl: 'max-age=10, stale-while-revalidate=30', headers: { age: '15' } });
    await h!.get('/p');
    const r = await h!.get('/p');
    expect(cs(r)).toMatch(/^lacquer; hit; ttl=-5; detail="stale-while-revalidate"$/);
  });

  it('RFC 5861 §3: past its stale-while-revalidate window the request waits for the origin', async () => {
    await start({ kind: 'normal', cacheControl: 'max-age=10, stale-while-revalidate=30', headers: { age: '50' } });
    await h!.get('/p');
    const r = await h!.get('/p');
    expect(cs(r)).toMatch(/^lacquer; fwd=stale; fwd-status=200/);
    expect(origin().count('/p')).toBe(2);
  });

  it('§4.2.4: a refresh that answers with a response that may not be stored removes the stale object', async () => {
    await start({ kind: 'normal', cacheControl: 'max-age=10', body: 'old', headers: { age: '20' } }, OPT_IN_SWR);
    await h!.get('/p');
    origin().set('/p', { kind: 'normal', cacheControl: 'no-store', body: 'private now' });
    expect((await h!.get('/p')).body).toBe('old'); // stale-while-revalidate; the refresh sees no-store
    await untilCount(2);
    await backgroundDone();
    const r = await h!.get('/p');
    expect(r.body).toBe('private now');
    expect(origin().count('/p')).toBe(3);
  });

  it('a background refresh whose body is cut off does not replace the stale object', async () => {
    await start({ kind: 'normal', cacheControl: 'max-age=10', body: 'old', headers: { age: '20' } }, OPT_IN_SWR);
    await h!.get('/p');
    origin().set('/p', { kind: 'reset-mid-body', afterBytes: 100, then: { cacheControl: 'max-age=60', bodySize: 4000 } });
    expect((await h!.get('/p')).body).toBe('old');
    await untilCount(2);
    await backgroundDone();
    const r = await h!.get('/p');
    expect(r.body).toBe('old');
    expect(cs(r)).toMatch(/detail="stale-while-revalidate"/);
  });
});

describe('stale-if-error (RFC 5861 §4)', () => {
  // Stale only on error: no stale-while-revalidate window.
  const sie: Behaviour = { kind: 'normal', cacheControl: 'max-age=10, stale-while-revalidate=0, stale-if-error=600', body: 'old', headers: { age: '20' } };

  it('RFC 5861 §4: origin down → the stale object, with a negative ttl and the error in detail', async () => {
    await start(sie);
    await h!.get('/p');
    await origin().refuse();
    const r = await h!.get('/p');
    expect(r.status).toBe(200);
    expect(r.body).toBe('old');
    expect(cs(r)).toMatch(/^lacquer; fwd=stale; ttl=-(9|10|11); detail="stale-if-error; error=connection_refused"$/);
    expect(r.headers['proxy-status']).toMatch(/^lacquer; error=connection_refused/);
  });

  for (const status of [500, 502, 503, 504]) {
    it(`RFC 5861 §4: origin answers ${status} → the stale object, with received-status in detail`, async () => {
      await start(sie);
      await h!.get('/p');
      origin().set('/p', { kind: 'error', status });
      const r = await h!.get('/p');
      expect(r.status).toBe(200);
      expect(r.body).toBe('old');
      expect(cs(r)).toMatch(new RegExp(`^lacquer; fwd=stale; fwd-status=${status}; ttl=-(9|10|11); detail="stale-if-error; received-status=${status}"$`));
      expect(r.headers['proxy-status']).toMatch(new RegExp(`received-status=${status}`));
    });
  }

  it('RFC 5861 §4: other error statuses (501) are the origin\'s answer, not a reason to serve stale', async () => {
    await start(sie);
    await h!.get('/p');
    origin().set('/p', { kind: 'error', status: 501 });
    const r = await h!.get('/p');
    expect(r.status).toBe(501);
  });

  it('RFC 5861 §4: requests waiting on the same failing fetch all get the stale object, not the 503', async () => {
    await start(sie);
    await h!.get('/p');
    origin().set('/p', { kind: 'slow', firstByteMs: 150, then: { status: 503, body: 'down' } });
    const replies = await Promise.all(Array.from({ length: 4 }, () => h!.get('/p')));
    expect(replies.map((r) => r.status)).toEqual([200, 200, 200, 200]);
    expect(replies.every((r) => r.body === 'old')).toBe(true);
    expect(replies.filter((r) => cs(r).includes('collapsed')).length).toBe(3);
    expect(origin().count('/p')).toBe(2);
  });

  it('RFC 5861 §4: cache.stale_if_error (default 1d) covers an origin failure for a response without RFC 5861 directives', async () => {
    await start({ kind: 'normal', cacheControl: 'max-age=0', body: 'old' });
    await h!.get('/p');
    await origin().refuse();
    const r = await h!.get('/p');
    expect(r.body).toBe('old');
    expect(cs(r)).toMatch(/detail="stale-if-error; error=connection_refused"/);
  });

  for (const cc of ['must-revalidate', 'proxy-revalidate', 'no-cache']) {
    it(`§4.2.4 / §5.2.2: never stale for a ${cc} object past expiry, even with stale-if-error (explained 503)`, async () => {
      await start({ kind: 'normal', cacheControl: `max-age=10, ${cc}, stale-if-error=600`, etag: '"v1"', headers: { age: '20' } });
      await h!.get('/p');
      await origin().refuse();
      const r = await h!.get('/p');
      expect(r.status).toBe(503);
      expect(r.headers['proxy-status']).toMatch(/error=connection_refused/);
      expect(r.headers['retry-after']).toBeDefined();
      expect(cs(r)).toMatch(/^lacquer; fwd=stale/);
    });
  }

  it('§5.2.2.10: s-maxage implies proxy-revalidate: no stale on error without an RFC 5861 directive', async () => {
    await start({ kind: 'normal', cacheControl: 's-maxage=10', etag: '"v1"', headers: { age: '20' } });
    await h!.get('/p');
    origin().set('/p', { kind: 'error', status: 503 });
    const r = await h!.get('/p');
    expect(r.status).toBe(503);
    expect(cs(r)).toMatch(/fwd-status=503/);
  });

  it('§5.2.2.10 + RFC 5861: s-maxage with an explicit stale-if-error is served stale on error', async () => {
    await start({ kind: 'normal', cacheControl: 's-maxage=10, stale-if-error=600', etag: '"v1"', headers: { age: '20' } });
    await h!.get('/p');
    origin().set('/p', { kind: 'error', status: 503 });
    const r = await h!.get('/p');
    expect(r.status).toBe(200);
    expect(cs(r)).toMatch(/detail="stale-if-error; received-status=503"/);
  });

  it('RFC 5861 §4: past stale_if_error the origin failure is an explained 503', async () => {
    await start({ kind: 'normal', cacheControl: 'max-age=10', etag: '"v1"', headers: { age: '20' } }, { cache: { stale_if_error: '5s' } });
    await h!.get('/p');
    await origin().refuse();
    const r = await h!.get('/p');
    expect(r.status).toBe(503);
    expect(r.headers['proxy-status']).toMatch(/^lacquer; error=connection_refused; next-hop="app1"/);
    expect(r.headers['retry-after']).toBe('5');
    expect(cs(r)).toBe('lacquer; fwd=stale');
    const line = await h!.log.forRequest(String(r.headers['x-request-id']));
    expect(line.error?.class).toBe('connection_refused');
  });
});

describe('truncated bodies are never stored', () => {
  async function fetchBroken(path: string): Promise<unknown> {
    try {
      const r = await h!.get(path);
      return r;
    } catch (e) {
      return e;
    }
  }

  it('an origin reset mid-body is not stored: the next request gets a complete, checksum-valid body from the origin', async () => {
    await start({ kind: 'reset-mid-body', afterBytes: 1000, then: { cacheControl: 'max-age=60', bodySize: 8000 } });
    const broken = await fetchBroken('/p');
    expect(broken).toBeInstanceOf(Error);
    origin().set('/p', { kind: 'normal', cacheControl: 'max-age=60', bodySize: 8000 });
    const r = await h!.get('/p');
    expect(r.raw.length).toBe(8000);
    expect(verifyChecksum(r.headers['x-lab-checksum'], r.raw)).toBe(true);
    expect(cs(r)).toBe('lacquer; fwd=uri-miss; fwd-status=200; stored');
    expect(origin().count('/p')).toBe(2);
  });

  it('a body stalled past timeouts.between_bytes is not stored', async () => {
    await start({ kind: 'stall', afterBytes: 1000, then: { cacheControl: 'max-age=60', bodySize: 8000 } }, { timeouts: { between_bytes: '300ms' } });
    const broken = await fetchBroken('/p');
    expect(broken).toBeInstanceOf(Error);
    origin().set('/p', { kind: 'normal', cacheControl: 'max-age=60', bodySize: 8000 });
    const r = await h!.get('/p');
    expect(r.raw.length).toBe(8000);
    expect(verifyChecksum(r.headers['x-lab-checksum'], r.raw)).toBe(true);
    expect(cs(r)).toMatch(/fwd=uri-miss/);
    const again = await h!.get('/p');
    expect(cs(again)).toMatch(/^lacquer; hit/);
    expect(verifyChecksum(again.headers['x-lab-checksum'], again.raw)).toBe(true);
  });
});

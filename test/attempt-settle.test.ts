// Every attempt settles exactly once (issue 9 item 5): whatever undici or the client does, no coalescing
// flight, slot, queue entry or in-flight count outlives its request, and the same URL answers normally
// right after. And a body that breaks before its first byte reached the client is answered with the
// explained error (issue 11 item 7), never an empty reply the log calls 200.
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { request, type Dispatcher } from 'undici';
import { startPools, sleep, until, type PoolsHarness } from './pools-harness.ts';

let h: PoolsHarness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const cacheable = { kind: 'normal', cacheControl: 'max-age=60', bodySize: 64 } as const;

/** Nothing left behind: no flight, no slot, no queue entry, no fetch in flight. */
async function drained(hh: PoolsHarness): Promise<boolean> {
  const b = hh.pool().backends[0]!;
  return until(() => hh.proxy.ctx.coalescer.size === 0 && b.slots.active === 0 && b.slots.queued === 0 && b.inflight === 0, 2000);
}

/** Sends raw bytes; resolves with what came back when the server closes or after `ms`. */
function raw(url: string, bytes: string, ms = 5000): Promise<string> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const s = net.connect(Number(u.port), u.hostname, () => s.write(bytes));
    const done = () => {
      clearTimeout(t);
      s.destroy();
      resolve(Buffer.concat(chunks).toString('latin1'));
    };
    const t = setTimeout(done, ms);
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('close', done);
    s.on('error', done);
  });
}

describe('a dispatch that fails synchronously', () => {
  for (const how of ['throws', 'reports through onResponseError before returning'] as const) {
    it(`settles when undici's dispatch ${how}; the same URL then answers at once`, async () => {
      h = await startPools({ origins: [{ behaviours: { '*': cacheable } }] });
      const b = h.pool().backends[0]!;
      const pool = b.dispatcher as unknown as { dispatch: Dispatcher['dispatch'] };
      const original = pool.dispatch;
      pool.dispatch = (_opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler) => {
        const err = Object.assign(new Error('invalid header value'), { code: 'UND_ERR_INVALID_ARG' });
        if (how === 'throws') throw err;
        handler.onResponseError?.(undefined as unknown as Dispatcher.DispatchController, err);
        return false;
      };
      const t0 = performance.now();
      const r = await h.send('/x');
      expect(performance.now() - t0).toBeLessThan(2000);
      expect(r.status).toBe(503);
      expect(r.headers['proxy-status']).toMatch(/^lacquer; error=proxy_internal_error; next-hop="app1"/);
      expect(await drained(h)).toBe(true);
      pool.dispatch = original;
      const t1 = performance.now();
      const again = await h.send('/x');
      expect(again.status).toBe(200);
      expect(performance.now() - t1).toBeLessThan(2000); // not after coalesce_wait (65 s)
      expect(h.origins[0]!.count('/x')).toBe(1);
      expect(await drained(h)).toBe(true);
    });
  }

  it('a request with two Host headers does not hang nor poison its URL', async () => {
    h = await startPools({ origins: [{ behaviours: { '*': cacheable } }] });
    const host = new URL(h.url).host;
    const reply = await raw(h.url, `GET /twohosts HTTP/1.1\r\nHost: ${host}\r\nHost: other.example\r\nConnection: close\r\n\r\n`);
    // Refused at receive (400) or explained (503): an answer, either way, not a hang.
    expect(reply).toMatch(/^HTTP\/1\.1 (400|503) /);
    expect(await drained(h)).toBe(true);
    const t = performance.now();
    const r = await h.send('/twohosts');
    expect(r.status).toBe(200);
    expect(performance.now() - t).toBeLessThan(2000);
    expect(await drained(h)).toBe(true);
  });
});

describe('a client that leaves mid-wait', () => {
  it('in the backend queue: its entry goes at once, and the URL answers normally afterwards', async () => {
    h = await startPools({
      origins: [{ behaviours: { '/hold': { kind: 'slow', firstByteMs: 500, then: { cacheControl: 'no-store' } }, '*': cacheable } }],
      config: (urls) => ({ backends: [{ name: 'app1', url: urls[0], max_connections: 1 }], overload: { queue_timeout: '5s' } }),
    });
    const holder = h.send('/hold');
    await until(() => h!.origins[0]!.count('/hold') === 1, 1000);
    const ac = new AbortController();
    const waiter = request(`${h.url}/queued`, { signal: ac.signal }).catch((e: unknown) => e);
    const b = h.pool().backends[0]!;
    expect(await until(() => b.slots.queued === 1, 1000)).toBe(true);
    expect(h.proxy.ctx.coalescer.size).toBe(2); // /hold and /queued each lead their flight
    ac.abort();
    await waiter;
    expect(await until(() => b.slots.queued === 0 && h!.proxy.ctx.coalescer.size === 1, 300)).toBe(true);
    expect((await holder).status).toBe(200);
    expect(await drained(h)).toBe(true);
    const r = await h.send('/queued');
    expect(r.status).toBe(200);
    expect(h.origins[0]!.count('/queued')).toBe(1);
  });

  it('in coalescing: a waiter that leaves changes nothing for the leader; a leader that leaves still fills the cache for its waiter', async () => {
    h = await startPools({ origins: [{ behaviours: { '*': { kind: 'slow', firstByteMs: 400, then: { cacheControl: 'max-age=60', bodySize: 64 } } } }] });
    // A waiter leaves.
    const leader = h.send('/c1');
    await until(() => h!.origins[0]!.count('/c1') === 1, 1000);
    const ac = new AbortController();
    const waiter = request(`${h.url}/c1`, { signal: ac.signal }).catch((e: unknown) => e);
    expect(await until(() => h!.proxy.ctx.coalescer.collapsed === 1, 1000)).toBe(true); // it joined the flight
    ac.abort();
    await waiter;
    expect((await leader).status).toBe(200);
    expect(await drained(h)).toBe(true);
    expect((await h.send('/c1')).headers['cache-status']).toMatch(/hit/);
    // The leader leaves; its waiter still gets the object from the one origin request.
    const ac2 = new AbortController();
    const leader2 = request(`${h.url}/c2`, { signal: ac2.signal }).catch((e: unknown) => e);
    await until(() => h!.origins[0]!.count('/c2') === 1, 1000);
    const waiter2 = h.send('/c2');
    expect(await until(() => h!.proxy.ctx.coalescer.collapsed === 2, 1000)).toBe(true);
    ac2.abort();
    await leader2;
    const w2 = await waiter2;
    expect(w2.status).toBe(200);
    expect(h.origins[0]!.count('/c2')).toBe(1);
    expect(await drained(h)).toBe(true);
  });
});

describe('a body that breaks right after the headers (issue 11 item 7)', () => {
  const brokenFirstChunk = { kind: 'garbage', payload: 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\nnot a chunk\r\n' } as const;

  it('no body byte sent yet: the client gets the explained 503, and the log says 503', async () => {
    h = await startPools({ origins: [{ behaviours: { '/broken': brokenFirstChunk } }] });
    const r = await h.send('/broken');
    expect(r.status).toBe(503);
    expect(r.headers['proxy-status']).toMatch(/^lacquer; error=http_response_incomplete; next-hop="app1"/);
    expect(r.headers['retry-after']).toBeDefined();
    const line = await h.log.forRequest(String(r.headers['x-request-id']));
    expect(line.status).toBe(503);
    expect(line.served).toBe('synth');
    expect(await drained(h)).toBe(true);
  });

  it('no body byte sent yet and a stale copy may stand in: the stale copy answers', async () => {
    h = await startPools({ origins: [{ behaviours: { '/p': { kind: 'normal', cacheControl: 'max-age=1, stale-while-revalidate=0, stale-if-error=60', bodySize: 32 } } }] });
    expect((await h.send('/p')).status).toBe(200);
    await sleep(1100);
    h.origins[0]!.set('/p', brokenFirstChunk);
    const r = await h.send('/p');
    expect(r.status).toBe(200);
    expect(r.headers['cache-status']).toMatch(/stale-if-error; error=http_response_incomplete/);
  });

  it('body bytes already sent: the client connection is aborted, and the log says so', async () => {
    const afterOneChunk = { kind: 'garbage', payload: 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZZ\r\nbroken\r\n' } as const;
    h = await startPools({ origins: [{ behaviours: { '/half': afterOneChunk } }] });
    const host = new URL(h.url).host;
    const reply = await raw(h.url, `GET /half HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
    expect(reply).toMatch(/^HTTP\/1\.1 200 /);
    expect(reply).toContain('hello');
    expect(reply).not.toMatch(/\r\n0\r\n\r\n$/); // never the terminating chunk of a complete body
    expect(await until(() => h!.log.access().some((l) => l.url === '/half'), 1000)).toBe(true);
    const line = h.log.access().find((l) => l.url === '/half')!;
    // What the client saw: a 200 head, 5 body bytes, then the connection aborted.
    expect(line).toMatchObject({ status: 200, bytes: 5, client_gone: true, served: 'origin' });
    expect((line.error as { class: string }).class).toBe('http_response_incomplete');
    expect(await drained(h)).toBe(true);
  });
});

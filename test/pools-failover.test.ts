// Failover: a backend dies under load and clients see nothing; unsafe requests are never replayed once
// sent; the keep-alive race is retried once on a fresh connection (`retry=stale-keepalive`).
import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startPools, sleep, type PoolsHarness } from './pools-harness.ts';

let h: PoolsHarness | undefined;
let raw: Server | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
  await new Promise<void>((r) => (raw ? raw.close(() => r()) : r()));
  raw = undefined;
});

const NO_STORE = { '*': { kind: 'normal', cacheControl: 'no-store', bodySize: 256 } } as const;

describe('failover', () => {
  it('killing one of three backends under steady load of uncacheable GETs gives 0 client errors', async () => {
    h = await startPools({
      origins: [{ behaviours: NO_STORE }, { behaviours: NO_STORE }, { behaviours: NO_STORE }],
      config: () => ({ health: { consecutive_failures: 3, base_ejection: '10s' } }),
    });
    const t0 = Date.now();
    const end = t0 + 2500;
    const results: { at: number; status: number; ms: number }[] = [];
    const worker = async (w: number) => {
      for (let i = 0; Date.now() < end && i < 5000; i++) {
        const s = performance.now();
        const r = await h!.send(`/load/${w}/${i}`);
        results.push({ at: Date.now() - t0, status: r.status, ms: performance.now() - s });
      }
    };
    const load = Promise.all(Array.from({ length: 8 }, (_, w) => worker(w)));
    await sleep(800);
    const beforeKill = h.origins[1]!.count();
    await h.origins[1]!.refuse();
    const killedAt = Date.now() - t0;
    await load;
    const errors = results.filter((r) => r.status !== 200);
    const around = results.filter((r) => r.at >= killedAt - 250 && r.at <= killedAt + 750).map((r) => r.ms).sort((a, b) => a - b);
    const p99 = around[Math.floor(around.length * 0.99)] ?? 0;
    const retried = h.log.access().filter((l) => l.retry !== undefined);
    console.log(
      `failover: ${results.length} requests, ${errors.length} client errors, ${retried.length} retried (${[...new Set(retried.map((l) => l.retry))].join(', ')}), p99 around the kill ${p99.toFixed(1)} ms, app2 saw ${beforeKill} before / ${h.origins[1]!.count()} after`,
    );
    expect(results.length).toBeGreaterThan(200);
    expect(errors).toEqual([]);
    // Every retried request logged both attempts: the failure on app2, then success elsewhere.
    expect(retried.length).toBeGreaterThan(0);
    for (const l of retried) {
      const attempts = l.attempts as { backend: string; outcome: string }[];
      expect(attempts.at(-1)!.outcome).toBe('ok');
      expect(attempts.at(-1)!.backend).not.toBe('app2');
      expect(attempts[0]!.backend).toBe('app2');
    }
    // Passive health took app2 out: it is ejected, and later requests never tried it.
    const snap = h.pool().snapshot();
    expect(snap.backends[1]!.state).toBe('ejected');
    // Requests that met dead app2: at most the ones in flight at the kill (8) plus the failures that ejected it (3).
    const metDead = h.log.access().filter((l) => ((l.attempts ?? []) as { backend: string; outcome: string }[]).some((a) => a.backend === 'app2' && a.outcome !== 'ok'));
    expect(metDead.length).toBeLessThanOrEqual(8 + 3);
  });

  it('a POST is never retried after it was sent: the origin saw it once; a replayable PUT is retried', async () => {
    const reset = { '/submit': { kind: 'reset-before-headers' } } as const;
    h = await startPools({
      origins: [{ behaviours: reset }, { behaviours: NO_STORE }, { behaviours: NO_STORE }],
      config: (urls) => ({ backends: [], pools: [{ name: 'p', director: 'fallback', backends: urls.map((url, i) => ({ name: `app${i + 1}`, url })) }], routes: [{ pool: 'p' }] }),
    });
    const post = await h.send('/submit', { method: 'POST', body: 'order=1', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    expect(post.status).toBe(503);
    expect(post.headers['proxy-status']).toMatch(/error=connection_terminated; next-hop="app1"/);
    expect(h.origins.map((o) => o.count('/submit'))).toEqual([1, 0, 0]);
    const line = await h.log.forRequest(String(post.headers['x-request-id']));
    expect((line.attempts as unknown[]).length).toBe(1);

    const put = await h.send('/submit', { method: 'PUT', body: 'hello' });
    expect(put.status).toBe(200);
    expect(h.origins.map((o) => o.count('/submit'))).toEqual([2, 1, 0]);
    expect(h.origins[1]!.requests.at(-1)!.bodyBytes).toBe(5); // the buffered body was replayed whole
    const putLine = await h.log.forRequest(String(put.headers['x-request-id']));
    // A fresh connection reset is not the keep-alive race: straight to another backend.
    expect(putLine.attempts).toMatchObject([{ backend: 'app1', outcome: 'connection_terminated', reused: false }, { backend: 'app2', outcome: 'ok', retry: 'terminated' }]);
  });

  it('a POST to a backend that refuses the connection (nothing sent) is retried on another', async () => {
    h = await startPools({
      origins: [{ behaviours: NO_STORE }, { behaviours: NO_STORE }],
      config: (urls) => ({ backends: [], pools: [{ name: 'p', director: 'fallback', backends: urls.map((url, i) => ({ name: `app${i + 1}`, url })) }], routes: [{ pool: 'p' }] }),
    });
    await h.origins[0]!.refuse();
    const r = await h.send('/form', { method: 'POST', body: 'x=1' });
    expect(r.status).toBe(200);
    const line = await h.log.forRequest(String(r.headers['x-request-id']));
    expect(line.attempts).toMatchObject([{ backend: 'app1', outcome: 'connection_refused' }, { backend: 'app2', outcome: 'ok', retry: 'connect' }]);
    expect(h.origins[1]!.requests[0]!.bodyBytes).toBe(3);
  });

  it('the keep-alive race: a reused socket closed under the request is retried once on a fresh connection', async () => {
    // An origin that keeps connections open after the first answer but closes one as soon as a second
    // request arrives on it: exactly what an origin idle timeout racing our reuse looks like.
    let seen = 0;
    const sockets = new Set<Socket>();
    raw = createServer((s) => {
      sockets.add(s);
      let n = 0;
      let buf = '';
      s.on('error', () => undefined);
      s.on('data', (d: Buffer) => {
        buf += d.toString('latin1');
        while (buf.includes('\r\n\r\n')) {
          buf = buf.slice(buf.indexOf('\r\n\r\n') + 4);
          seen++;
          if (n++ > 0) {
            s.destroy();
            return;
          }
          s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncache-control: no-store\r\n\r\nok');
        }
      });
    });
    await new Promise<void>((r) => raw!.listen(0, '127.0.0.1', r));
    const port = (raw.address() as { port: number }).port;
    h = await startPools({ origins: [], config: () => ({ backends: [{ name: 'racy', url: `http://127.0.0.1:${port}` }], timeouts: { idle: '5s' } }) });
    expect((await h.send('/a')).status).toBe(200);
    const b = await h.send('/b');
    expect(b.status).toBe(200);
    const line = await h.log.forRequest(String(b.headers['x-request-id']));
    expect(line.retry).toBe('stale-keepalive');
    expect(line.attempts).toMatchObject([
      { backend: 'racy', outcome: 'connection_terminated', reused: true },
      { backend: 'racy', outcome: 'ok', retry: 'stale-keepalive' },
    ]);
    expect(seen).toBe(3);
    expect(h.pool().backends[0]!.counters.staleKeepaliveRetries).toBe(1);
    // The same race for a POST is not retried: it may have been processed.
    const post = await h.send('/c', { method: 'POST', body: 'x' });
    expect(post.status).toBe(200); // fresh connection from the stale-keepalive retry was closed: new socket
    const post2 = await h.send('/d', { method: 'POST', body: 'y' });
    expect(post2.status).toBe(503);
    expect(post2.headers['proxy-status']).toMatch(/connection_terminated/);
    for (const s of sockets) s.destroy();
  });
});

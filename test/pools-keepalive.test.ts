// The keep-alive race (FAILURES.md connection_terminated), forced deterministically: an origin that
// answers the first request of every connection and closes the connection the moment a second request
// arrives on it — exactly what an origin idle timeout firing as the proxy reuses the socket looks like on
// the wire, without depending on timers. Half of the connections are closed with a FIN (undici: "other
// side closed"), half with a RST (ECONNRESET). The test counts the races the origin caused and checks that
// every one happened, was seen as a reused socket and was retried as stale-keepalive, with no client error.
import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startPools, type PoolsHarness } from './pools-harness.ts';

let h: PoolsHarness | undefined;
let raw: Server | undefined;
const sockets = new Set<Socket>();
afterEach(async () => {
  await h?.close();
  h = undefined;
  for (const s of sockets) s.destroy();
  sockets.clear();
  await new Promise<void>((r) => (raw ? raw.close(() => r()) : r()));
  raw = undefined;
});

/** The racing origin; `races` counts the requests it received on a reused connection and closed under. */
async function racingOrigin(): Promise<{ url: string; stats: { races: number; answered: number; connections: number } }> {
  const stats = { races: 0, answered: 0, connections: 0 };
  raw = createServer((s) => {
    sockets.add(s);
    const id = stats.connections++;
    let n = 0;
    let buf = '';
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      while (buf.includes('\r\n\r\n')) {
        buf = buf.slice(buf.indexOf('\r\n\r\n') + 4);
        if (n++ > 0) {
          stats.races++;
          if (id % 2 === 0) s.destroy(); // RST
          else s.end(); // FIN, the request unread
          return;
        }
        stats.answered++;
        s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncache-control: no-store\r\nconnection: keep-alive\r\n\r\nok');
      }
    });
  });
  await new Promise<void>((r) => raw!.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(raw.address() as { port: number }).port}`, stats };
}

describe('keep-alive race', () => {
  it('an origin that closes every reused connection as the request arrives: 600 requests, every race retried as stale-keepalive, zero client errors', async () => {
    const origin = await racingOrigin();
    // The retry budget's own minimum is small on purpose: without the exemption of retries that add no
    // origin load, ~300 races in a few seconds would exhaust it and reach clients.
    h = await startPools({ origins: [], config: () => ({ backends: [{ name: 'racy', url: origin.url }] }) });
    const statuses: number[] = [];
    const worker = async (w: number) => {
      for (let i = 0; i < 150; i++) statuses.push((await h!.send(`/ka/${w}/${i}`)).status);
    };
    await Promise.all([0, 1, 2, 3].map(worker));
    const lines = h.log.access();
    const retried = lines.filter((l) => l.retry === 'stale-keepalive');
    const errors = statuses.filter((s) => s !== 200).length;
    const snap = h.pool().snapshot();
    console.log(
      `keep-alive race: ${statuses.length} requests, ${origin.stats.races} races forced by the origin (RST and FIN), ${retried.length} retried as stale-keepalive, ${errors} client errors, ${origin.stats.connections} origin connections; budget ${JSON.stringify(snap.retryBudget)}`,
    );
    expect(statuses).toHaveLength(600);
    expect(errors).toBe(0);
    // The race happened — on a large share of the requests — and every one was retried as stale-keepalive.
    expect(origin.stats.races).toBeGreaterThanOrEqual(150);
    expect(retried).toHaveLength(origin.stats.races);
    expect(h.pool().backends[0]!.counters.staleKeepaliveRetries).toBe(origin.stats.races);
    for (const l of retried) {
      expect(l.attempts).toMatchObject([
        { backend: 'racy', outcome: 'connection_terminated', reused: true },
        { backend: 'racy', outcome: 'ok', retry: 'stale-keepalive' },
      ]);
    }
    // Each answered exactly once: no request reached the origin's application twice.
    expect(origin.stats.answered).toBe(600);
    // Outside the budget, and counted apart; the race never ejects the backend (it is the proxy's idle timeout, not a fault).
    expect(snap.retryBudget).toMatchObject({ spent: 0, denied: 0, free: origin.stats.races });
    expect(snap.backends[0]).toMatchObject({ state: 'healthy', ejections: 0 });
  }, 30_000);
});

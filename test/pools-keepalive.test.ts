// The keep-alive race with a real idle timeout: the origin closes idle connections after 1 s and does
// not announce it (no `Keep-Alive: timeout` hint, like many servers), while Lacquer keeps idle sockets
// for 5 s. Requests ~1 s apart hit sockets the origin is closing; clients must never see it.
import { afterEach, describe, expect, it } from 'vitest';
import { startPools, sleep, type PoolsHarness } from './pools-harness.ts';

let h: PoolsHarness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

describe('keep-alive race', () => {
  it('requests every ~1 s against an origin with a 1 s idle timeout: no client errors', async () => {
    // An explicit `Connection: keep-alive` makes Node omit its `Keep-Alive: timeout=1` hint, so the
    // proxy cannot know the origin's idle timeout and keeps sockets for its own 5 s.
    const behaviours = { '*': { kind: 'normal', cacheControl: 'no-store', bodySize: 64, headers: { connection: 'keep-alive' } } } as const;
    h = await startPools({ origins: [{ keepAliveTimeoutMs: 1000, behaviours }], config: () => ({ timeouts: { idle: '5s' } }) });
    const statuses: number[] = [];
    const offsets = [-2, 0, 1, -1, 2, 0, 3, -3, 1];
    statuses.push((await h.send('/ka/0')).status);
    for (const [i, d] of offsets.entries()) {
      await sleep(1000 + d);
      statuses.push((await h.send(`/ka/${i + 1}`)).status);
    }
    const lines = h.log.access();
    const races = lines.filter((l) => l.retry === 'stale-keepalive');
    const connections = h.origins[0]!.connections();
    console.log(
      `keep-alive race: ${statuses.length} requests, ${statuses.filter((s) => s !== 200).length} client errors, ${races.length} retried as stale-keepalive, ${connections} origin connections`,
    );
    for (const l of lines.filter((x) => x.status !== 200)) console.log(JSON.stringify(l));
    expect(statuses.every((s) => s === 200)).toBe(true);
    for (const l of races) {
      expect(l.attempts).toMatchObject([{ outcome: 'connection_terminated', reused: true }, { outcome: 'ok', retry: 'stale-keepalive' }]);
    }
    // The origin did close idle sockets under the proxy (else the scenario did not happen): most requests
    // needed a new connection although the proxy would have kept the old one for 5 s.
    expect(connections).toBeGreaterThanOrEqual(statuses.length / 2);
  }, 15_000);
});

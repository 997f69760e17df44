// The primary's shared state for `workers: N` (src/workers/primary.ts PrimaryHub), without forking: locks
// for cross-worker coalescing, the hand-off store and its invalidation, the broadcast's acks, and what
// happens when a worker dies. The forked instance is tested end to end in workers.test.ts.
import { describe, expect, it } from 'vitest';
import { IpcCoordinator, outbox, unpack, type IpcDown, type IpcEnvelope } from '../src/coord/ipc.ts';
import type { SharedObject } from '../src/coord/types.ts';
import { CACHE_LABELS } from '../src/observe/classify.ts';
import { quantile, record } from '../src/observe/histogram.ts';
import { mergePools } from '../src/observe/instance.ts';
import { Timeline, type RemoteSecond } from '../src/observe/timeline.ts';
import type { BackendSnapshot, PoolSnapshot } from '../src/upstream/state.ts';
import { semanticProblems } from '../src/config/semantics.ts';
import { limitShare, memorySplit, PrimaryHub, workerCount, workerExecArgv } from '../src/workers/primary.ts';

function hub(workers = [1, 2, 3]) {
  const sent: { to: number; m: IpcDown }[] = [];
  const alive = new Set(workers);
  const h = new PrimaryHub({ maxBytes: 1024 * 1024, send: (to, m) => sent.push({ to, m }), workers: () => [...alive] });
  const replies = (to: number) => sent.filter((s) => s.to === to && s.m.t === 'reply').map((s) => (s.m as { rid: number; value: unknown }));
  return { h, sent, alive, replies };
}

const obj = (primary: string, body = 'x', tags: string[] = []): SharedObject => ({ key: primary, primary, varyFields: [], tags, meta: {}, body: Buffer.from(body) });

describe('PrimaryHub (workers: the primary)', () => {
  it('gives a fetch lock to one worker; the waiters learn the outcome on release', () => {
    const { h, replies } = hub();
    h.handle(1, { t: 'lock', rid: 1, key: 'k', ttlMs: 60_000 });
    h.handle(2, { t: 'lock', rid: 1, key: 'k', ttlMs: 60_000 });
    expect(replies(1)).toEqual([{ t: 'reply', rid: 1, value: 'acquired' }]);
    expect(replies(2)).toEqual([{ t: 'reply', rid: 1, value: 'held' }]);
    h.handle(2, { t: 'wait', rid: 2, key: 'k', ms: 5000 });
    h.handle(3, { t: 'wait', rid: 7, key: 'k', ms: 5000 });
    // Only the holder releases: another worker's release is ignored.
    h.handle(2, { t: 'release', key: 'k', outcome: 'stored' });
    expect(replies(2)).toHaveLength(1);
    h.handle(1, { t: 'put', object: obj('h/a', 'A'), ttlMs: 60_000 });
    h.handle(1, { t: 'release', key: 'k', outcome: 'stored' });
    expect(replies(2).at(-1)).toEqual({ t: 'reply', rid: 2, value: 'stored' });
    expect(replies(3).at(-1)).toEqual({ t: 'reply', rid: 7, value: 'stored' });
    // The waiters find the holder's object in the hand-off store.
    h.handle(2, { t: 'lookup', rid: 3, primary: 'h/a' });
    expect((replies(2).at(-1)!.value as SharedObject[]).map((o) => o.body.toString())).toEqual(['A']);
  });

  it('a plain miss looks up and locks in one round trip; a URI the store has is only looked up', () => {
    const { h, replies } = hub();
    h.handle(1, { t: 'miss', rid: 1, primary: 'h/a', key: 'h/a', ttlMs: 60_000 });
    h.handle(2, { t: 'miss', rid: 1, primary: 'h/a', key: 'h/a', ttlMs: 60_000 });
    expect(replies(1)).toEqual([{ t: 'reply', rid: 1, value: { found: [], lock: 'acquired' } }]);
    expect(replies(2)).toEqual([{ t: 'reply', rid: 1, value: { found: [], lock: 'held' } }]);
    h.handle(1, { t: 'put', object: obj('h/b', 'B'), ttlMs: 60_000 });
    h.handle(3, { t: 'miss', rid: 2, primary: 'h/b', key: 'h/b', ttlMs: 60_000 });
    const v = replies(3).at(-1)!.value as { found: SharedObject[]; lock?: string };
    expect(v.found.map((o) => o.body.toString())).toEqual(['B']);
    expect(v.lock).toBeUndefined();
  });

  it('a worker that dies releases its locks at once as expired, and no broadcast waits for it', () => {
    const { h, replies, alive } = hub();
    h.handle(1, { t: 'lock', rid: 1, key: 'k', ttlMs: 60_000 });
    h.handle(2, { t: 'wait', rid: 5, key: 'k', ms: 5000 });
    h.handle(2, { t: 'publish', rid: 6, message: { kind: 'invalidate', inv: { op: 'all', mode: 'hard' } } });
    alive.delete(1);
    h.workerGone(1);
    expect(replies(2)).toContainEqual({ t: 'reply', rid: 5, value: 'expired' });
    // The publish still waits for worker 3; its ack completes it.
    expect(replies(2).some((r) => r.rid === 6)).toBe(false);
    h.handle(3, { t: 'ack', aid: 1 });
    expect(replies(2)).toContainEqual({ t: 'reply', rid: 6, value: [] });
    // The lock is free again: a waiter takes it over.
    h.handle(3, { t: 'lock', rid: 9, key: 'k', ttlMs: 60_000 });
    expect(replies(3).at(-1)).toEqual({ t: 'reply', rid: 9, value: 'acquired' });
  });

  it('relays a publish to every other worker and answers once each has acked', () => {
    const { h, sent, replies } = hub();
    h.handle(1, { t: 'publish', rid: 4, message: { kind: 'control', name: 'maintenance', data: { target: '*' } } });
    const delivered = sent.filter((s) => s.m.t === 'deliver');
    expect(delivered.map((d) => d.to).sort()).toEqual([2, 3]);
    const aid = (delivered[0]!.m as { aid: number }).aid;
    h.handle(2, { t: 'ack', aid });
    expect(replies(1)).toEqual([]);
    h.handle(3, { t: 'ack', aid });
    expect(replies(1)).toEqual([{ t: 'reply', rid: 4, value: [] }]);
  });

  it('applies invalidations to the hand-off store: purge, tags, ban, soft', () => {
    const { h, replies } = hub();
    h.handle(1, { t: 'put', object: obj('h/a'), ttlMs: 60_000 });
    h.handle(1, { t: 'put', object: obj('h/b', 'x', ['t1']), ttlMs: 60_000 });
    h.handle(1, { t: 'put', object: obj('h/c/1'), ttlMs: 60_000 });
    h.handle(1, { t: 'put', object: obj('h/d'), ttlMs: 60_000 });
    h.invalidate({ op: 'purge', primary: 'h/a', mode: 'hard' });
    h.invalidate({ op: 'tags', tags: ['t1'], mode: 'hard' });
    h.invalidate({ op: 'ban', spec: { kind: 'prefix', value: 'h/c/' }, mode: 'hard', at: Date.now() });
    h.invalidate({ op: 'purge', primary: 'h/d', mode: 'soft' });
    const found = (p: string) => {
      h.handle(2, { t: 'lookup', rid: 1, primary: p });
      return replies(2).at(-1)!.value as SharedObject[];
    };
    expect(found('h/a')).toEqual([]);
    expect(found('h/b')).toEqual([]);
    expect(found('h/c/1')).toEqual([]);
    expect(found('h/d')).toHaveLength(1);
    expect(found('h/d')[0]!.invalidatedAt).toBeTypeOf('number');
  });

  it('a large body stays with its holder: a lookup pulls it (one pull for concurrent lookups); a purge during the pull, or the holder dying, answers nothing', () => {
    const { h, sent, replies, alive } = hub();
    const lazy = (primary: string) => ({ ...obj(primary), body: Buffer.alloc(0) });
    h.handle(1, { t: 'put', object: lazy('h/big'), ttlMs: 60_000, lazy: true });
    // The entry alone is charged: the body did not cross.
    expect(h.handoffFigures()).toEqual({ objects: 1, bytes: 512, maxBytes: 1024 * 1024 });
    h.handle(2, { t: 'lookup', rid: 1, primary: 'h/big' });
    h.handle(3, { t: 'lookup', rid: 1, primary: 'h/big' });
    const pulls = sent.filter((s) => s.m.t === 'pull');
    expect(pulls.map((p) => [p.to, (p.m as { key: string }).key])).toEqual([[1, 'h/big']]);
    expect(replies(2)).toEqual([]);
    const pid = (pulls[0]!.m as { pid: number }).pid;
    h.handle(1, { t: 'pulled', pid, object: obj('h/big', 'BIG') });
    expect((replies(2)[0]!.value as SharedObject[]).map((o) => o.body.toString())).toEqual(['BIG']);
    expect((replies(3)[0]!.value as SharedObject[]).map((o) => o.body.toString())).toEqual(['BIG']);
    // A purge between the pull and its answer: the holder may have answered before applying it.
    h.handle(2, { t: 'lookup', rid: 2, primary: 'h/big' });
    const pid2 = (sent.filter((s) => s.m.t === 'pull').at(-1)!.m as { pid: number }).pid;
    h.invalidate({ op: 'tags', tags: ['other'], mode: 'hard' });
    h.handle(1, { t: 'pulled', pid: pid2, object: obj('h/big', 'OLD') });
    expect(replies(2).at(-1)).toEqual({ t: 'reply', rid: 2, value: [] });
    // The holder dies with a pull outstanding: the lookup answers at once, and its entries go with it.
    h.handle(3, { t: 'lookup', rid: 3, primary: 'h/big' });
    alive.delete(1);
    h.workerGone(1);
    expect(replies(3).at(-1)).toEqual({ t: 'reply', rid: 3, value: [] });
    expect(h.handoffFigures().objects).toBe(0);
  });

  it('sends one turn\u2019s messages in one envelope, in order; a message that cannot be sent answers its request at once', async () => {
    const writes: IpcEnvelope<number>[] = [];
    const send = outbox<number>((e) => writes.push(e), () => undefined);
    send(1);
    send(2);
    send(3);
    expect(writes).toEqual([]);
    await new Promise((r) => setImmediate(r));
    expect(writes.map((e) => unpack<number>(e))).toEqual([[1, 2, 3]]);
    // A closed channel: a lookup answers "nothing shared" at once instead of after its 1 s timeout.
    const listeners: ((m: unknown) => void)[] = [];
    const coord = new IpcCoordinator({ send: () => { throw new Error('channel closed'); }, on: (_e, l) => listeners.push(l), off: () => undefined }, { maxObjectBytes: 1 << 20 });
    const t0 = Date.now();
    expect(await coord.lookup('h/a', () => 'h/a')).toBeUndefined();
    expect(Date.now() - t0).toBeLessThan(900);
    expect(coord.status().errors.lookup).toBe(1);
  });

  it('gives workers a 16 MiB semi-space unless the operator chose one', () => {
    expect(workerExecArgv(['--enable-source-maps'], undefined)).toEqual(['--enable-source-maps', '--max-semi-space-size=16']);
    expect(workerExecArgv(['--max-semi-space-size=8'], undefined)).toEqual(['--max-semi-space-size=8']);
    expect(workerExecArgv([], '--max-semi-space-size=32')).toEqual([]);
    // The primary's own small semi-space (ops/node-flags.ts reexecAsPrimary) is not passed on: workers get theirs.
    expect(workerExecArgv(['--max-semi-space-size=1'], undefined, 'primary')).toEqual(['--max-semi-space-size=16']);
  });

  it('splits cache.memory: a thirty-second (at most 16 MiB) for the hand-off store, the rest evenly between workers', () => {
    expect(memorySplit(256 * 1024 * 1024, 2)).toEqual({ handoff: 8 * 1024 * 1024, perWorker: 124 * 1024 * 1024 });
    expect(memorySplit(1024 * 1024 * 1024, 4).handoff).toBe(16 * 1024 * 1024);
  });

  it('auto is one per core, except in a fleet (its workers would not share the fleet’s Redis), where more than 1 is refused', () => {
    expect(workerCount('auto', 4)).toBe(4);
    expect(workerCount('auto', 1)).toBe(1);
    expect(workerCount(3, 4)).toBe(3);
    expect(workerCount('auto', 4, true)).toBe(1);
    const fleet = { redis: 'redis://127.0.0.1:6379' };
    const workers = (raw: Record<string, unknown>) => semanticProblems(raw).filter((p) => p.path[0] === 'workers');
    expect(workers({ fleet, workers: 2 }).map((p) => p.value)).toEqual([2]);
    expect(workers({ fleet, workers: 'auto' })).toEqual([]);
    expect(workers({ workers: 2 })).toEqual([]);
  });

  it('splits origin limits (max_connections, max_concurrency) so the workers together keep them', () => {
    const shares = (limit: number, n: number) => Array.from({ length: n }, (_, i) => limitShare(limit, n, i));
    expect(shares(8, 2)).toEqual([4, 4]);
    expect(shares(5, 2)).toEqual([3, 2]);
    expect(shares(10, 4).reduce((a, b) => a + b)).toBe(10);
    // Below one slot per worker each keeps one: a worker without a slot could never fetch.
    expect(shares(1, 3)).toEqual([1, 1, 1]);
  });
});

/** A closed second as a worker sends it: `ms` the latencies of its requests (some 5xx), one backend's TTFBs. */
function second(t: number, ms: number[], o: { e5xx?: number; ttfb?: number[]; rss?: number } = {}): RemoteSecond {
  const latency = new Map<number, number>();
  for (const v of ms) record(latency, v);
  const ttfb = new Map<number, number>();
  for (const v of o.ttfb ?? []) record(ttfb, v);
  const cache = Object.fromEntries(CACHE_LABELS.map((l) => [l, 0])) as RemoteSecond['cache'];
  cache.miss = ms.length;
  const e5xx = o.e5xx ?? 0;
  return {
    t, requests: ms.length, cache, s5xx: e5xx, e5xx: e5xx ? { origin_5xx: e5xx } : {}, failures: {}, attempts: ms.length, attemptFailures: 0, latency,
    backends: new Map([['default/app1', { ttfb, ok: ms.length, failed: 0 }]]), eldP99Ms: 1, sample: { cpu: 10, rss: o.rss ?? 100, heap: 50, cacheBytes: 7, cacheMax: 70 },
  };
}

describe('the instance timeline (workers: the admin worker merges the others\u2019 seconds)', () => {
  const t0 = 1_800_000_000;
  const sample = { cpuPercent: 5, rssBytes: 1000, heapUsedBytes: 500, eldP99Ms: 2, eldMaxMs: 3, cacheBytes: 1, cacheMax: 10 };

  it('sums counts and merges latency histograms (a percentile of the union, never an average of percentiles)', () => {
    const tl = new Timeline(() => 'default', t0 * 1000);
    // Worker 1: 90 fast requests; worker 2: 10 slow ones. The union's p50 is fast and its p99 slow; averaging
    // each worker's p99 would give neither.
    tl.merge('worker1', [second(t0, Array(90).fill(5), { ttfb: Array(90).fill(4) })]);
    tl.merge('worker2', [second(t0, Array(10).fill(800), { e5xx: 3, ttfb: Array(10).fill(700) })]);
    const w = tl.window(60_000, (t0 + 1) * 1000);
    expect(w.requests).toBe(100);
    expect(w.s5xx).toBe(3);
    expect(w.cache.miss).toBe(100);
    const union = new Map<number, number>();
    for (const v of [...Array(90).fill(5), ...Array(10).fill(800)]) record(union, v);
    expect(quantile(w.latency, 0.5)).toBe(quantile(union, 0.5));
    expect(quantile(w.latency, 0.99)).toBe(quantile(union, 0.99));
    expect(quantile(w.latency, 0.99)!).toBeGreaterThan(700);
    expect(quantile(w.backends.get('default/app1')!.ttfb, 0.5)!).toBeLessThan(5);
  });

  it('counts each resent second once, and makes chart points late enough for the others\u2019 part', () => {
    const tl = new Timeline(() => 'default', t0 * 1000);
    tl.pointLagSeconds = 2;
    const a = second(t0, [5, 5]);
    const b = second(t0 + 1, [5]);
    tl.merge('worker1', [a]);
    tl.merge('worker1', [a, b]); // the next gather resends t0
    expect(tl.window(60_000, (t0 + 2) * 1000).requests).toBe(3);
    // The admin worker's own seconds: t0 (closed at t0+1), t0+1, t0+2. Points come 2 s after their second.
    expect(tl.tick(sample, (t0 + 1) * 1000)).toEqual([]);
    expect(tl.tick(sample, (t0 + 2) * 1000)).toEqual([]);
    const points = tl.tick(sample, (t0 + 3) * 1000);
    expect(points.map((p) => p.t)).toEqual([t0]);
    // Worker 1's part is in: its 2 requests and its process figures summed with the admin worker's.
    expect(points[0]!.cache.miss).toBe(2);
    expect(points[0]!.rss).toBe(1000 + 100);
    expect(points[0]!.cacheBytes).toBe(1 + 7);
    // Without other workers (pointLagSeconds 0) each tick makes its own second's point at once.
    const alone = new Timeline(() => 'default', t0 * 1000);
    expect(alone.tick(sample, (t0 + 1) * 1000).map((p) => p.t)).toEqual([t0]);
  });

  it('the hand-off store says what it holds (for /api/stats)', () => {
    const { h } = hub();
    h.handle(1, { t: 'put', object: obj('h/a', 'AAAA'), ttlMs: 60_000 });
    h.handle(1, { t: 'put', object: obj('h/b', 'BB'), ttlMs: 60_000 });
    expect(h.handoffFigures()).toEqual({ objects: 2, bytes: 4 + 512 + 2 + 512, maxBytes: 1024 * 1024 });
  });
});

describe('the instance backends (workers: /api/backends over every worker)', () => {
  const backend = (o: Partial<BackendSnapshot>): BackendSnapshot => ({
    pool: 'default', name: 'app1', url: 'http://o', zone: undefined, weight: 1, state: 'healthy', override: 'auto', probeWindow: '', lastProbeError: undefined,
    inflight: 0, maxConnections: 10, queueLength: 0, ejections: 0, ttfbP50: undefined, ttfbP99: undefined, firstByteTimeout: 1000, errorsByClass: {}, requests: 0, ...o,
  });
  const pool = (b: BackendSnapshot[]): PoolSnapshot => ({ name: 'default', director: 'round-robin', healthy: b.filter((x) => x.state === 'healthy').length, total: b.length, panic: false, backends: b });

  it('sums in-flight, queues and limits, shows the worst passive state and each worker\u2019s part', () => {
    const merged = mergePools([
      { worker: 0, pools: [pool([backend({ inflight: 1, queueLength: 0, requests: 5, errorsByClass: { http_response_timeout: 1 } })])] },
      { worker: 1, pools: [pool([backend({ inflight: 3, queueLength: 2, requests: 7, state: 'ejected', consecutiveFailures: 5, failures: 5, ejections: 1, errorsByClass: { http_response_timeout: 2 } })])] },
    ]);
    const b = merged[0]!.backends[0]!;
    expect(b).toMatchObject({ inflight: 4, queueLength: 2, maxConnections: 20, requests: 12, state: 'ejected', consecutiveFailures: 5, failures: 5, ejections: 1, errorsByClass: { http_response_timeout: 3 } });
    expect(b.workers!.map((w) => [w.worker, w.state, w.inflight])).toEqual([[0, 'healthy', 1], [1, 'ejected', 3]]);
    expect(merged[0]!.healthy).toBe(0);
    // One process: its snapshots as they are.
    const single = [pool([backend({ inflight: 2 })])];
    expect(mergePools([{ worker: 0, pools: single }])).toBe(single);
  });
});

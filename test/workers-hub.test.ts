// The primary's shared state for `workers: N` (src/workers/primary.ts PrimaryHub), without forking: locks
// for cross-worker coalescing, the hand-off store and its invalidation, the broadcast's acks, and what
// happens when a worker dies. The forked instance is tested end to end in workers.test.ts.
import { describe, expect, it } from 'vitest';
import type { IpcDown } from '../src/coord/ipc.ts';
import type { SharedObject } from '../src/coord/types.ts';
import { memorySplit, PrimaryHub, workerExecArgv } from '../src/workers/primary.ts';

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

  it('gives workers a 16 MiB semi-space unless the operator chose one', () => {
    expect(workerExecArgv(['--enable-source-maps'], undefined)).toEqual(['--enable-source-maps', '--max-semi-space-size=16']);
    expect(workerExecArgv(['--max-semi-space-size=8'], undefined)).toEqual(['--max-semi-space-size=8']);
    expect(workerExecArgv([], '--max-semi-space-size=32')).toEqual([]);
  });

  it('splits cache.memory: an eighth (at most 64 MiB) for the hand-off store, the rest evenly between workers', () => {
    expect(memorySplit(256 * 1024 * 1024, 2)).toEqual({ handoff: 32 * 1024 * 1024, perWorker: 112 * 1024 * 1024 });
    expect(memorySplit(1024 * 1024 * 1024, 4).handoff).toBe(64 * 1024 * 1024);
  });
});

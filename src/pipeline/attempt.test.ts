// The attempt state machine: its transition table, and the Run driven by a scripted fetch (the origin
// side replaced, the proxy context real) — each callback order undici can produce settles exactly once.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../../test/helpers.ts';
import { ProxyError } from '../errors.ts';
import { Exchange } from '../server/exchange.ts';
import { attempt, isFinal, step, type AttemptEvent, type AttemptResult, type AttemptState } from './attempt.ts';
import type { FetchControl, FetchHandle, FetchSink, fetchOnce } from './fetch.ts';
import type { ForwardPlan } from './forward.ts';

describe('transition table', () => {
  const states: AttemptState[] = ['connecting', 'waiting', 'streaming', 'done', 'failed'];
  const events: AttemptEvent[] = ['sent', 'headers', 'end', 'error', 'abandon'];

  it('connecting → waiting → streaming → done, each by its event', () => {
    expect(step('connecting', 'sent')).toBe('waiting');
    expect(step('waiting', 'headers')).toBe('streaming');
    expect(step('streaming', 'end')).toBe('done');
  });

  it('every live state can fail or be abandoned; the end only comes while streaming', () => {
    for (const s of ['connecting', 'waiting', 'streaming'] as const) {
      expect(step(s, 'error')).toBe('failed');
      expect(step(s, 'abandon')).toBe('done');
    }
    expect(step('connecting', 'end')).toBeUndefined();
    expect(step('waiting', 'end')).toBeUndefined();
    expect(step('streaming', 'headers')).toBeUndefined(); // a second head is ignored
  });

  it('done and failed are final: no event leaves them', () => {
    for (const s of states.filter(isFinal)) for (const e of events) expect(step(s, e)).toBeUndefined();
    expect(states.filter(isFinal)).toEqual(['done', 'failed']);
  });
});

type FakeRes = { headersSent: boolean; statusCode: number; written: Buffer[]; ended: boolean; destroyed: boolean; head?: number };

function fakeExchange(): { ex: Exchange; res: FakeRes } {
  const req = { headers: { host: 'unit.test' }, rawHeaders: ['Host', 'unit.test'], method: 'GET', url: '/u', socket: { remoteAddress: '127.0.0.1' } } as unknown as IncomingMessage;
  const res: FakeRes & Record<string, unknown> = {
    headersSent: false,
    statusCode: 200,
    written: [],
    ended: false,
    destroyed: false,
    writeHead(status: number) {
      res.headersSent = true;
      res.statusCode = status;
      res.head = status;
      return res;
    },
    write(c: Buffer) {
      res.written.push(c);
      return true;
    },
    end() {
      res.ended = true;
    },
    destroy() {
      res.destroyed = true;
    },
    once() {
      return res;
    },
  };
  return { ex: new Exchange(req, res as unknown as ServerResponse), res };
}

/** A fetch whose callbacks the test calls; `during` runs inside the call, before it returns. */
function scripted(during?: (sink: FetchSink) => void) {
  const s: { sink?: FetchSink; aborted: number } = { aborted: 0 };
  const control: FetchControl = { pause: () => undefined, resume: () => undefined, abort: () => undefined };
  const fetch = ((_b, _r, sink): FetchHandle => {
    s.sink = sink;
    during?.(sink);
    return { abort: () => void s.aborted++, startedAt: performance.now(), ttfbMs: () => 3, bytesReceived: () => 0 };
  }) as typeof fetchOnce;
  return { s, fetch, control };
}

describe('Run: every order of callbacks settles exactly once', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h.close();
  });

  const err = (type: 'http_response_incomplete' | 'http_response_timeout' = 'http_response_incomplete') =>
    new ProxyError({ type, phase: type === 'http_response_timeout' ? 'wait_headers' : 'body', backend: 'app1', headersReceived: type !== 'http_response_timeout' });

  function run(fetch: typeof fetchOnce, withClient: boolean, retryStatus: (s: number) => boolean = () => false) {
    const { ex, res } = fakeExchange();
    const pool = h.proxy.ctx.pool;
    const backend = pool.backends[0]!;
    const plan: ForwardPlan = { pool, primary: undefined, stale: undefined, flight: undefined, fwd: 'request', client: withClient ? ex : null, source: ex, body: null };
    let settled = 0;
    let result: AttemptResult | undefined;
    const p = attempt(h.proxy.ctx, plan, backend, undefined, { fresh: false, timeouts: undefined, retryStatus, fetch }).then((r) => {
      settled++;
      result = r;
      return r;
    });
    return { ex, res, p, settled: () => settled, result: () => result };
  }

  it('a failure reported inside dispatch, before the fetch returns, settles failed', async () => {
    const { fetch, s } = scripted((sink) => sink.onError(err('http_response_timeout')));
    const r = run(fetch, true);
    expect(await r.p).toMatchObject({ kind: 'failed', responseStarted: false });
    expect(r.ex.attempts).toHaveLength(1);
    expect(s.aborted).toBe(1); // settled while dispatching: the handle is told to stop
  });

  it('a fetch that throws settles failed with proxy_internal_error', async () => {
    const fetch = (() => {
      throw new TypeError('boom');
    }) as unknown as typeof fetchOnce;
    const r = run(fetch, true);
    const out = await r.p;
    expect(out.kind).toBe('failed');
    expect(out.kind === 'failed' && out.error.type).toBe('proxy_internal_error');
  });

  it('the head is held until the first body byte, then the body streams to the end', async () => {
    const { fetch, s, control } = scripted();
    const r = run(fetch, true);
    s.sink!.onStart?.();
    s.sink!.onHeaders(200, { 'content-type': 'text/plain' }, 'OK', control);
    expect(r.res.headersSent).toBe(false);
    s.sink!.onData(Buffer.from('abc'));
    expect(r.res.head).toBe(200);
    expect(r.res.written.map(String)).toEqual(['abc']);
    s.sink!.onEnd();
    expect(await r.p).toEqual({ kind: 'done' });
    expect(r.res.ended).toBe(true);
    expect(r.ex.attempts).toEqual([expect.objectContaining({ outcome: 'ok', status: 200 })]);
  });

  it('a failure after the head but before any body byte sends nothing: the caller can still explain it', async () => {
    const { fetch, s, control } = scripted();
    const r = run(fetch, true);
    s.sink!.onHeaders(200, {}, 'OK', control);
    s.sink!.onError(err());
    expect(await r.p).toMatchObject({ kind: 'failed', responseStarted: false });
    expect(r.res.headersSent).toBe(false);
    expect(r.ex.cache.fwdStatus).toBeUndefined(); // the log will not claim the origin's 200
  });

  it('a failure after body bytes went out aborts the client connection', async () => {
    const { fetch, s, control } = scripted();
    const r = run(fetch, true);
    s.sink!.onHeaders(200, {}, 'OK', control);
    s.sink!.onData(Buffer.from('ab'));
    s.sink!.onError(err());
    expect(await r.p).toMatchObject({ kind: 'failed', responseStarted: true });
    expect(r.res.destroyed).toBe(true);
  });

  it('a timeout racing the response: whatever comes after the first outcome is ignored', async () => {
    const { fetch, s, control } = scripted();
    const r = run(fetch, true);
    s.sink!.onError(err('http_response_timeout'));
    s.sink!.onHeaders(200, {}, 'OK', control);
    s.sink!.onData(Buffer.from('late'));
    s.sink!.onEnd();
    s.sink!.onError(err());
    await r.p;
    await new Promise((resolve) => setImmediate(resolve));
    expect(r.settled()).toBe(1);
    expect(r.result()).toMatchObject({ kind: 'failed' });
    expect(r.ex.attempts).toHaveLength(1);
    expect(r.res.headersSent).toBe(false);
  });

  it('a client leaving while a pass waits for headers abandons the fetch: done, once', async () => {
    const { fetch, s, control } = scripted();
    const r = run(fetch, true);
    s.sink!.onStart?.();
    r.ex.markGone();
    expect(await r.p).toEqual({ kind: 'done' });
    expect(s.aborted).toBe(1);
    s.sink!.onHeaders(200, {}, 'OK', control);
    s.sink!.onError(err());
    expect(r.ex.attempts).toHaveLength(1);
  });

  it('an exception inside a callback fails the attempt instead of vanishing into undici', async () => {
    const { fetch, s, control } = scripted();
    const r = run(fetch, true, () => {
      throw new Error('bug in a callback');
    });
    s.sink!.onHeaders(503, {}, 'Service Unavailable', control);
    const out = await r.p;
    expect(out.kind === 'failed' && out.error.type).toBe('proxy_internal_error');
    expect(s.aborted).toBe(1);
  });

  it('a status to retry is dropped unseen: retry-status, the fetch stopped', async () => {
    const { fetch, s, control } = scripted();
    const r = run(fetch, true, (st) => st === 503);
    s.sink!.onHeaders(503, {}, 'Service Unavailable', control);
    expect(await r.p).toEqual({ kind: 'retry-status', status: 503 });
    expect(s.aborted).toBe(1);
    expect(r.res.headersSent).toBe(false);
  });
});

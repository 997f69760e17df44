// The access line is written by hand for speed (see BENCHMARKS.md): it must stay the line pino would
// write, and batching it for the file destination must not reorder it against pino's own lines.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { AccessLog } from '../src/observe/access-log.ts';
import type { Exchange } from '../src/server/exchange.ts';

const dir = mkdtempSync(join(tmpdir(), 'lacquer-access-log-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function readLines(file: string): { id?: string; msg?: string }[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { id?: string; msg?: string });
}

function capture(): { stream: Writable; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      cb();
    },
  });
  return { stream, lines };
}

/** Just what AccessLog.request() reads of an exchange. */
function exchange(id: string, extra: Partial<Exchange> = {}): Exchange {
  return {
    id,
    startedAt: Date.now(),
    method: 'GET',
    host: 'example.test',
    target: '/a?"quoted"\\path',
    res: { headersSent: true, statusCode: 200 },
    cache: { hit: true, ttl: 42 },
    served: 'hit',
    bytesOut: 1024,
    elapsedMs: () => 0.26,
    backend: undefined,
    ttfbMs: undefined,
    attempts: [],
    staleMs: undefined,
    clientGone: false,
    traceparent: '00-0123456789abcdef0123456789abcdef-0123456789abcdef-01',
    error: undefined,
    ...extra,
  } as unknown as Exchange;
}

describe('access log line', () => {
  it('is the line the pino child logger writes, key for key and in the same order', () => {
    const ours = capture();
    new AccessLog({ destination: ours.stream, level: 'info', proxyName: 'lacquer' }).request(exchange('r1'));
    const theirs = capture();
    const child = pino({ base: null, timestamp: pino.stdTimeFunctions.isoTime, formatters: { level: (label: string) => ({ level: label }) } }, theirs.stream).child({ type: 'access' });
    child.info({ id: 'r1', method: 'GET', host: 'example.test', url: '/a?"quoted"\\path', status: 200, cache: 'lacquer; hit; ttl=42', served: 'hit', bytes: 1024, ms: 0.3, trace: '00-0123456789abcdef0123456789abcdef-0123456789abcdef-01' });
    expect(ours.lines).toHaveLength(1);
    const [a, b] = [JSON.parse(ours.lines[0]!), JSON.parse(theirs.lines[0]!)];
    expect(Object.keys(a)).toEqual(Object.keys(b));
    expect({ ...a, time: 0 }).toEqual({ ...b, time: 0 });
    expect(Date.parse(a.time)).toBeGreaterThan(Date.now() - 10_000);
  });

  it('is JSON.stringify byte for byte, attempts included (they are written by hand too)', () => {
    const out = capture();
    const attempts = [
      { backend: 'app1', outcome: 'connection_refused', ms: 3, reused: undefined },
      { backend: 'a"p\\p2', outcome: 'http_response_timeout', ms: 1001, reused: true, retry: 'connect-failure' },
      { backend: 'app3', outcome: 'ok', status: 200, ms: 12, retry: 'timeout' },
    ];
    const ex = exchange('r3', { attempts: attempts as unknown as Exchange['attempts'], backend: 'app3', ttfbMs: 11.94, retryRefused: 'budget', staleMs: 1500, clientGone: true, client: '::1', protocol: 'HTTP/1.1', served: 'origin', cache: { hit: false, fwd: 'uri-miss', fwdStatus: 200, detail: 'say "hi"' } } as Partial<Exchange>);
    new AccessLog({ destination: out.stream, level: 'info', proxyName: 'lacquer' }).request(ex);
    const line = out.lines[0]!;
    const time = (JSON.parse(line) as { time: string }).time;
    const expected = JSON.stringify({
      level: 'info', time, type: 'access', id: 'r3', method: 'GET', host: 'example.test', url: '/a?"quoted"\\path', client: '::1', protocol: 'HTTP/1.1',
      status: 200, cache: 'lacquer; fwd=uri-miss; fwd-status=200; detail="say hi"', served: 'origin', bytes: 1024, ms: 0.3, backend: 'app3', ttfb_ms: 11.9,
      attempts, retry: 'connect-failure', retry_refused: 'budget', stale_ms: 1500, client_gone: true, trace: '00-0123456789abcdef0123456789abcdef-0123456789abcdef-01',
    });
    expect(line).toBe(expected);
  });

  it('falls back to pino for a value JSON cannot write', () => {
    const out = capture();
    const log = new AccessLog({ destination: out.stream, level: 'info', proxyName: 'lacquer' });
    const err = { type: 'proxy_internal_error', phase: 'deliver', source: 'internal', code: 'x', details: '', message: 'm', hint: 'h', headersReceived: false, context: { big: 10n } };
    log.request(exchange('r2', { error: err as unknown as Exchange['error'], served: 'synth' }));
    expect(out.lines).toHaveLength(1);
    expect(JSON.parse(out.lines[0]!)).toMatchObject({ type: 'access', id: 'r2', error: { class: 'proxy_internal_error' } });
  });

  it('to a file: batched, yet in order with the operational lines', async () => {
    const file = join(dir, 'order.log');
    const log = new AccessLog({ destination: file, level: 'info', proxyName: 'lacquer' });
    log.request(exchange('first'));
    log.logger.warn('between');
    for (let i = 0; i < 2000; i++) log.request(exchange(`n${i}`)); // several batches
    log.request(exchange('last'));
    let lines: { id?: string; msg?: string }[] = [];
    for (let i = 0; i < 100 && lines.length < 2003; i++) {
      await new Promise((r) => setTimeout(r, 20));
      lines = readLines(file);
    }
    expect(lines.map((l) => l.id ?? l.msg).slice(0, 3)).toEqual(['first', 'between', 'n0']);
    expect(lines).toHaveLength(2003);
    expect(lines.at(-1)!.id).toBe('last');
  });

  it('a background refresh failure goes with the access lines (where `lacquer logs` reads it), once typed `background`', async () => {
    const file = join(dir, 'background.log');
    const log = new AccessLog({ destination: file, level: 'info', proxyName: 'lacquer' });
    const err = { type: 'connection_refused', phase: 'connect', source: 'upstream', code: 'ECONNREFUSED', details: '', message: 'm', hint: 'h', headersReceived: false, backend: 'app1' };
    log.backgroundFailure(exchange('bg'), err as unknown as Parameters<AccessLog['backgroundFailure']>[1]);
    log.close();
    // Operational lines are written asynchronously; close() lets the write in flight finish.
    let raw = '';
    for (let i = 0; i < 100 && !raw; i++) {
      raw = readFileSync(file, 'utf8').trim();
      if (!raw) await new Promise((r) => setTimeout(r, 10));
    }
    expect(raw.match(/"type":/g)).toHaveLength(1);
    expect(JSON.parse(raw)).toMatchObject({ level: 'warn', type: 'background', error: { class: 'connection_refused', served: 'background-refresh' } });
  });

  it('flush() puts the pending batch in the file before it returns (the process exits right after)', async () => {
    const file = join(dir, 'flush.log');
    const log = new AccessLog({ destination: file, level: 'info', proxyName: 'lacquer' });
    for (let i = 0; i < 100 && !existsSync(file); i++) await new Promise((r) => setTimeout(r, 10)); // opened
    await new Promise((r) => setTimeout(r, 20));
    log.request(exchange('a'));
    log.request(exchange('b'));
    log.flush();
    expect(readLines(file).map((l) => l.id)).toEqual(['a', 'b']);
  });
});

describe('log file sink: direct writes, the thread pool after a slow one', () => {
  it('writes a batch to the file before write() returns while writes are fast', async () => {
    const { openSink } = await import('../src/observe/log-sink.ts');
    const file = join(dir, 'direct.log');
    const sink = openSink(file);
    sink.write(Buffer.from('{"a":1}\n'));
    expect(sink.writesDirect?.()).toBe(true);
    // No tick has passed: only a synchronous write can have put it there (a pool write completes later).
    expect(readFileSync(file, 'utf8')).toBe('{"a":1}\n');
    sink.write(Buffer.from('{"a":2}\n'));
    expect(readFileSync(file, 'utf8')).toBe('{"a":1}\n{"a":2}\n');
    sink.close();
  });

  it('after a write slower than the limit, hands later batches to the thread pool, in order, nothing lost', async () => {
    const { openSink } = await import('../src/observe/log-sink.ts');
    const file = join(dir, 'slow.log');
    // A limit below any write's duration: the first write counts as slow.
    const sink = openSink(file, -1);
    expect(sink.writesDirect?.()).toBe(true);
    sink.write(Buffer.from('one\n'));
    expect(readFileSync(file, 'utf8')).toBe('one\n');
    // Not written synchronously any more: later batches go through libuv's thread pool.
    expect(sink.writesDirect?.()).toBe(false);
    sink.write(Buffer.from('two\n'));
    sink.write(Buffer.from('three\n'));
    await sink.drain(5_000);
    expect(readFileSync(file, 'utf8')).toBe('one\ntwo\nthree\n');
    expect(sink.dropped()).toBe(0);
    sink.close();
  });
});

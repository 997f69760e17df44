// One test per failure class of ../shared/FAILURES.md that loopback can produce: what the client sees
// (status, Proxy-Status, Retry-After, X-Request-Id, an aborted connection after the headers) and the
// failure report in the access log (class, phase, code, backend, address, attempts, bytes, hint, health).
import net from 'node:net';
import { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { classifyFetchError, ProxyError } from '../src/errors.ts';
import { startHarness, type Harness, type LogLine } from './helpers.ts';
import { rawRequest } from './raw-client.ts';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

type Report = Record<string, unknown> & { attempts: { backend: string; outcome: string; ms: number }[]; health?: Record<string, unknown>; context?: Record<string, unknown> };

async function reportOf(id: unknown): Promise<{ line: LogLine; error: Report }> {
  const line = await h!.log.forRequest(String(id));
  expect(line.error, `access line of ${String(id)} carries a failure report`).toBeTruthy();
  return { line, error: line.error as Report };
}

/** The checks every explained 503 must pass. */
function expectSynthetic(r: { status: number | undefined; headers: Record<string, unknown> }, cls: string, id?: string): void {
  expect(r.status).toBe(503);
  expect(String(r.headers['proxy-status'])).toMatch(new RegExp(`^lacquer; error=${cls}; next-hop="app1"`));
  expect(r.headers['retry-after']).toBe('5');
  expect(r.headers['cache-status']).toBeTruthy();
  if (id) expect(r.headers['x-request-id']).toBe(id);
  else expect(String(r.headers['x-request-id'])).toMatch(/^[0-9a-f-]{36}$/);
}

function expectReport(e: Report, o: { cls: string; phase: string; code: RegExp; port: number; headersReceived: boolean }): void {
  expect(e.class).toBe(o.cls);
  expect(e.phase).toBe(o.phase);
  expect(String(e.code)).toMatch(o.code);
  expect(e.backend).toBe('app1');
  expect(e.address).toBe(`127.0.0.1:${o.port}`);
  expect(e.headers_received).toBe(o.headersReceived);
  expect(e.hint).toBe(new ProxyError({ type: o.cls as ProxyError['type'], phase: 'body' }).hint);
  expect(e.attempts).toHaveLength(1);
  expect(e.attempts[0]).toMatchObject({ backend: 'app1', outcome: o.cls });
  expect(e.health).toMatchObject({ pool: 'default', healthy: '1/1', max: null });
}

describe('failure classes (FAILURES.md), one per class', () => {
  it('connection_refused: explained 503, nothing sent, report names the address', async () => {
    h = await startHarness();
    await h.origins[0]!.refuse();
    const r = await h.get('/refused', { 'x-request-id': 'req-refused-1' });
    expectSynthetic(r, 'connection_refused', 'req-refused-1');
    const { line, error } = await reportOf('req-refused-1');
    expect(line.status).toBe(503);
    expect(line.served).toBe('synth');
    // The explained page is what the client got: its size is in the line (it said 0, as if nothing went out).
    expect(line.bytes).toBe(r.raw.length);
    expect(line.bytes).toBeGreaterThan(100);
    expectReport(error, { cls: 'connection_refused', phase: 'connect', code: /^ECONNREFUSED$/, port: h.origins[0]!.port, headersReceived: false });
    expect(error.served).toBe('synthetic-error');
    expect(error.bytes_received).toBe(0);
  });

  it('http_response_timeout: answers right after first_byte, with the limit and elapsed time in details', async () => {
    h = await startHarness({ origins: [{ behaviours: { '*': { kind: 'hang' } } }], backendExtra: [{ timeouts: { first_byte: '300ms' } }] });
    const t0 = performance.now();
    const r = await h.get('/hang');
    const ms = performance.now() - t0;
    expectSynthetic(r, 'http_response_timeout');
    expect(String(r.headers['proxy-status'])).toMatch(/details="first_byte_timeout=0\.3s elapsed=0\.[34]\d*s"/);
    // undici's own headers timer ticks every ~0.5 s and would answer at 0.5-1 s
    expect(ms).toBeGreaterThanOrEqual(295);
    expect(ms).toBeLessThan(480);
    const { error } = await reportOf(r.headers['x-request-id']);
    expectReport(error, { cls: 'http_response_timeout', phase: 'wait_headers', code: /^UND_ERR_HEADERS_TIMEOUT$/, port: h.origins[0]!.port, headersReceived: false });
    expect(error.details).toMatch(/^first_byte_timeout=0\.3s elapsed=0\.[34]\d*s$/);
  });

  it('connection_read_timeout: body stalls after the headers went out → client connection aborted, nothing cached', async () => {
    h = await startHarness({
      origins: [{ behaviours: { '*': { kind: 'stall', afterBytes: 100, then: { bodySize: 4096, cacheControl: 'max-age=60' } } } }],
      backendExtra: [{ timeouts: { between_bytes: '300ms' } }],
    });
    const r = await rawRequest(`${h.url}/stall`);
    expect(r.status).toBe(200); // the headers had already been sent
    expect(r.complete).toBe(false);
    expect(r.error?.code).toMatch(/ECONNRESET|ERR_STREAM_PREMATURE_CLOSE/);
    expect(r.body.length).toBe(100);
    expect(r.ms).toBeLessThan(700);
    const { line, error } = await reportOf(r.headers['x-request-id']);
    expect(line.status).toBe(200);
    expectReport(error, { cls: 'connection_read_timeout', phase: 'body', code: /^UND_ERR_BODY_TIMEOUT$/, port: h.origins[0]!.port, headersReceived: true });
    expect(error.details).toMatch(/^between_bytes_timeout=0\.3s elapsed=0\.\d+s$/);
    expect(error.bytes_received).toBe(100);
    // never cache the partial object
    await rawRequest(`${h.url}/stall`);
    expect(h.origins[0]!.count('/stall')).toBe(2);
  });

  it('http_response_incomplete: origin resets mid-body → client connection aborted, nothing cached', async () => {
    h = await startHarness({ origins: [{ behaviours: { '*': { kind: 'reset-mid-body', afterBytes: 200, then: { bodySize: 4096, cacheControl: 'max-age=60' } } } }] });
    const r = await rawRequest(`${h.url}/reset`);
    expect(r.status).toBe(200);
    expect(r.complete).toBe(false);
    expect(r.error).toBeTruthy();
    expect(r.body.length).toBe(200);
    const { error } = await reportOf(r.headers['x-request-id']);
    expectReport(error, { cls: 'http_response_incomplete', phase: 'body', code: /^(UND_ERR_SOCKET|ECONNRESET)$/, port: h.origins[0]!.port, headersReceived: true });
    expect(error.bytes_received).toBe(200);
    await rawRequest(`${h.url}/reset`);
    expect(h.origins[0]!.count('/reset')).toBe(2);
  });

  it('connection_terminated: origin resets before any response byte', async () => {
    h = await startHarness({ origins: [{ behaviours: { '*': { kind: 'reset-before-headers' } } }] });
    const r = await h.get('/rst');
    expectSynthetic(r, 'connection_terminated');
    const { error } = await reportOf(r.headers['x-request-id']);
    expectReport(error, { cls: 'connection_terminated', phase: 'wait_headers', code: /^(UND_ERR_SOCKET|ECONNRESET)$/, port: h.origins[0]!.port, headersReceived: false });
    expect(error.reused).toBe(false); // a fresh connection: not the keep-alive race
  });

  it('http_protocol_error: the report carries the first bytes received, escaped', async () => {
    h = await startHarness({ origins: [{ behaviours: { '*': { kind: 'garbage', payload: 'SSH-2.0-OpenSSH_9.6\r\n\r\n' } } }] });
    const r = await h.get('/junk');
    expectSynthetic(r, 'http_protocol_error');
    const { error } = await reportOf(r.headers['x-request-id']);
    expectReport(error, { cls: 'http_protocol_error', phase: 'wait_headers', code: /^(HPE_\w+|HTTPParserError)$/, port: h.origins[0]!.port, headersReceived: false });
    expect(String(error.context?.first_bytes)).toContain('SSH-2.0-OpenSSH_9.6');
  });

  it('http_response_header_section_size: headers over limits.response_header_size, limit in details', async () => {
    h = await startHarness({
      origins: [{ behaviours: { '*': { kind: 'huge-headers', bytes: 16 * 1024 } } }],
      config: { limits: { response_header_size: '8KiB' } },
    });
    const r = await h.get('/big-head');
    expectSynthetic(r, 'http_response_header_section_size');
    expect(String(r.headers['proxy-status'])).toContain('response_header_size=8KiB');
    const { error } = await reportOf(r.headers['x-request-id']);
    expectReport(error, { cls: 'http_response_header_section_size', phase: 'wait_headers', code: /HEADER|OVERFLOW/, port: h.origins[0]!.port, headersReceived: false });
  });

  it('origin 5xx with nothing stale: passed through, Proxy-Status received-status, not a fetch failure', async () => {
    h = await startHarness({ origins: [{ behaviours: { '*': { kind: 'error', status: 503, body: 'app says no\n' } } }] });
    const r = await h.get('/app-error');
    expect(r.status).toBe(503);
    expect(r.body).toBe('app says no\n');
    expect(String(r.headers['proxy-status'])).toMatch(/^lacquer; received-status=503(; next-hop="app1")?$/);
    expect(r.headers['retry-after']).toBeUndefined(); // the origin did not send one; Lacquer did not make this answer
    const line = await h.log.forRequest(String(r.headers['x-request-id']));
    expect(line.status).toBe(503);
    expect(line.served).toBe('origin');
    expect(line.error).toBeUndefined();
  });

  it('connection_timeout: the accept backlog of a listener that never accepts is full', async () => {
    const blocked = await startBlockedListener();
    try {
      h = await startHarness({ backendExtra: [{ url: `http://127.0.0.1:${blocked.port}`, timeouts: { connect: '300ms' } }] });
      const t0 = performance.now();
      const r = await h.get('/syn-dropped');
      const ms = performance.now() - t0;
      expectSynthetic(r, 'connection_timeout');
      expect(String(r.headers['proxy-status'])).toMatch(/details="connect_timeout=0\.3s elapsed=\d+\.\d+s"/);
      // undici's connect timer ticks every ~0.5 s: at least the limit, at most about a second late
      expect(ms).toBeGreaterThanOrEqual(295);
      expect(ms).toBeLessThan(1600);
      const { error } = await reportOf(r.headers['x-request-id']);
      expectReport(error, { cls: 'connection_timeout', phase: 'connect', code: /^UND_ERR_CONNECT_TIMEOUT$/, port: blocked.port, headersReceived: false });
    } finally {
      await blocked.close();
    }
  });

  it('a client that stops sending its body mid-upload: logged as gone (499), not retried, not the backend\'s failure', async () => {
    h = await startHarness();
    const id = 'upload-abandoned-1';
    const sock = net.connect(Number(new URL(h.url).port), '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    sock.write(`POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: ${id}\r\nContent-Length: 100000\r\n\r\n${'x'.repeat(1000)}`);
    for (let i = 0; i < 50 && h.origins[0]!.count('/upload') === 0; i++) await new Promise((r) => setTimeout(r, 10));
    sock.destroy();
    const line = await h.log.forRequest(id);
    expect(line.client_gone).toBe(true);
    expect(line.status).toBe(499);
    expect((line.error as Report | undefined)?.source ?? 'downstream').toBe('downstream');
    expect(line.attempts).toHaveLength(1); // never retried
    expect(h.proxy.ctx.pool.backends[0]!.counters.failures).toBe(0);
    expect(await originIdle(h.origins[0]!)).toBe(true); // the origin request was abandoned too
  });

  it('JSON clients get a JSON error body; details only with errors.expose_details', async () => {
    h = await startHarness({ config: { errors: { expose_details: false } } });
    await h.origins[0]!.refuse();
    const port = h.origins[0]!.port;
    const j = await h.get('/api', { accept: 'application/json' });
    expectSynthetic(j, 'connection_refused');
    expect(j.headers['content-type']).toBe('application/json');
    const body = JSON.parse(j.body) as Record<string, unknown>;
    expect(body).toMatchObject({ status: 503, error: 'connection_refused', request_id: j.headers['x-request-id'], retry_after: 5 });
    expect(body.backend).toBeUndefined();
    expect(j.body).not.toContain(String(port));
    const html = await h.get('/page', { accept: 'text/html' });
    expect(html.headers['content-type']).toMatch(/^text\/html/);
    expect(html.body).toContain('connection_refused');
    expect(html.body).toContain(String(html.headers['x-request-id']));
    expect(html.body).not.toContain(`127.0.0.1:${port}`);
    expect(html.body).not.toContain('Safe to retry');
    await h.close();

    h = await startHarness({ config: { errors: { expose_details: true } } });
    await h.origins[0]!.refuse();
    const port2 = h.origins[0]!.port;
    const j2 = JSON.parse((await h.get('/api', { accept: 'application/json' })).body) as Record<string, unknown>;
    expect(j2).toMatchObject({ backend: 'app1', address: `127.0.0.1:${port2}`, phase: 'connect', code: 'ECONNREFUSED' });
    expect(String(j2.hint)).toMatch(/nothing was sent/);
    const html2 = await h.get('/page', { accept: 'text/html' });
    expect(html2.body).toContain(`127.0.0.1:${port2}`);
    expect(html2.body).toContain('Safe to retry elsewhere');
  });
});

describe('classifyFetchError for what loopback cannot produce', () => {
  const ctx = { backend: 'app1', address: '127.0.0.1:1', timeouts: { connect: 3500, first_byte: 60_000, between_bytes: 60_000 }, elapsedMs: 12, headersReceived: false, bytesReceived: 0, requestSent: false };
  const err = (code: string, extra: Record<string, unknown> = {}) => Object.assign(new Error(code), { code, ...extra });

  it('ENOTFOUND → dns_error, EAI_AGAIN → dns_timeout, both in phase dns and retryable elsewhere', () => {
    const e = classifyFetchError(err('ENOTFOUND', { syscall: 'getaddrinfo', hostname: 'app.invalid' }), ctx);
    expect([e.type, e.phase, e.code, e.nothingSent]).toEqual(['dns_error', 'dns', 'ENOTFOUND', true]);
    const t = classifyFetchError(err('EAI_AGAIN'), ctx);
    expect([t.type, t.phase]).toEqual(['dns_timeout', 'dns']);
  });

  it('UND_ERR_CONNECT_TIMEOUT → connection_timeout with connect_timeout in details', () => {
    const e = classifyFetchError(err('UND_ERR_CONNECT_TIMEOUT'), { ...ctx, elapsedMs: 3504 });
    expect([e.type, e.phase, e.details]).toEqual(['connection_timeout', 'connect', 'connect_timeout=3.5s elapsed=3.504s']);
  });
});

async function originIdle(o: Harness['origins'][number]): Promise<boolean> {
  for (let i = 0; i < 50 && o.stats().inFlight > 0; i++) await new Promise((r) => setTimeout(r, 20));
  return o.stats().inFlight === 0;
}

/**
 * A listener whose thread is blocked, so it never accepts: once its accept queue (backlog 1) is full the
 * kernel drops further SYNs, as a dead or overloaded host would. Loopback only.
 */
async function startBlockedListener(): Promise<{ port: number; close(): Promise<void> }> {
  const flag = new Int32Array(new SharedArrayBuffer(4));
  const worker = new Worker(
    `const net = require('node:net');
     const { parentPort, workerData } = require('node:worker_threads');
     const s = net.createServer();
     s.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => {
       parentPort.postMessage(s.address().port);
       Atomics.wait(workerData, 0, 0, 15000); // blocked: this thread never runs accept()
     });`,
    { eval: true, workerData: flag },
  );
  const port = await new Promise<number>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  // Fill the accept queue: connect until one connect no longer completes (bounded).
  const fillers: net.Socket[] = [];
  for (let i = 0; i < 16; i++) {
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => undefined);
    fillers.push(s);
    const connected = await new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(false), 250);
      s.once('connect', () => {
        clearTimeout(t);
        resolve(true);
      });
    });
    if (!connected) break;
    if (i === 15) throw new Error('accept queue never filled');
  }
  return {
    port,
    async close() {
      for (const s of fillers) s.destroy();
      Atomics.store(flag, 0, 1);
      Atomics.notify(flag, 0);
      await worker.terminate();
    },
  };
}

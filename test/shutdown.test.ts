// Graceful shutdown of a real `lacquer serve` process: SIGTERM lets in-flight requests finish within
// proxy.drain_timeout, refuses new connections at once, cuts what is still running at the deadline, and
// always exits 0.
import net from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startOrigin, type Origin } from '../src/lab/origin.ts';
import http from 'node:http';
import { sleep, startHarness, type Harness } from './helpers.ts';
import { rawRequest } from './raw-client.ts';
import { lacquer, waitFor, type Spawned } from './spawn-node.ts';

const dir = mkdtempSync(join(tmpdir(), 'lacquer-shutdown-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let origin: Origin | undefined;
let proc: Spawned | undefined;
afterEach(async () => {
  if (proc && proc.child.exitCode === null && proc.child.signalCode === null) proc.child.kill('SIGKILL');
  await proc?.exited;
  proc = undefined;
  await origin?.close();
  origin = undefined;
});

/**
 * The serve flags of the current `describe.each` run: the default (`workers: auto`, several processes on a
 * multi-core machine) and a single process, so both drain paths stay tested whatever the machine.
 */
let flags: string[] = [];

/** Starts `lacquer serve` in front of a lab origin whose /slow answers after `slowMs`; returns the proxy port. */
async function serve(slowMs: number, drain: string): Promise<number> {
  origin = await startOrigin({ behaviours: { '/slow': { kind: 'slow', firstByteMs: slowMs, then: { cacheControl: 'no-store', body: 'finished\n' } } } });
  const cfg = join(dir, `serve-${drain}.yaml`);
  writeFileSync(cfg, `listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\nproxy:\n  drain_timeout: ${drain}\nlog:\n  access: stdout\nbackends:\n  - name: app1\n    url: ${origin.url}\n`);
  proc = lacquer(['serve', '-c', cfg, ...flags], { timeoutMs: 15_000 });
  await waitFor(() => proc!.stderr().includes('listening'), 15_000, () => `stdout ${proc!.stdout()} stderr ${proc!.stderr()}`);
  const start = JSON.parse(proc.stderr().split('\n').find((l) => l.includes('listening'))!) as { listen: string };
  return Number(start.listen.split(':')[1]);
}

function connectError(port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(undefined);
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code));
  });
}

describe.each([
  ['the default workers', []],
  ['workers: 1', ['--workers', '1']],
])('graceful shutdown (SIGTERM), %s', (_name, f) => {
  beforeEach(() => void (flags = f));

  it('lets the in-flight request finish with 200, refuses new connections, exits 0 within the drain bound', async () => {
    const port = await serve(1000, '5s');
    const inflight = rawRequest(`http://127.0.0.1:${port}/slow`);
    await waitFor(() => origin!.count('/slow') === 1);
    const t0 = performance.now();
    proc!.child.kill('SIGTERM');
    await sleep(100);
    expect(await connectError(port)).toBe('ECONNREFUSED');
    const r = await inflight;
    expect([r.status, r.body.toString(), r.complete, r.error]).toEqual([200, 'finished\n', true, undefined]);
    const run = await proc!.exited;
    const ms = performance.now() - t0;
    expect([run.code, run.signal]).toEqual([0, null]);
    expect(ms).toBeLessThan(2500); // the request's remaining ~0.9 s, not the 5 s drain bound
    const access = run.stdout.split('\n').filter((l) => l.includes('"type":"access"')).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(access.map((l) => [l.url, l.status])).toEqual([['/slow', 200]]);
    expect(run.stderr).toMatch(/"msg":"stopped"/);
  });

  it('cuts a request still running past proxy.drain_timeout, and still exits 0', async () => {
    const port = await serve(5000, '500ms');
    const inflight = rawRequest(`http://127.0.0.1:${port}/slow`);
    await waitFor(() => origin!.count('/slow') === 1);
    const t0 = performance.now();
    proc!.child.kill('SIGTERM');
    const r = await inflight;
    const cutAfter = performance.now() - t0;
    expect(r.status).toBeUndefined(); // no response head had been sent: the connection was closed
    expect(r.error).toBeTruthy();
    expect(cutAfter).toBeGreaterThanOrEqual(450);
    expect(cutAfter).toBeLessThan(1500);
    const run = await proc!.exited;
    expect([run.code, run.signal]).toEqual([0, null]);
    expect(performance.now() - t0).toBeLessThan(2000);
    // the origin request was abandoned too, not left running
    for (let i = 0; i < 50 && origin!.stats().inFlight > 0; i++) await sleep(20);
    expect(origin!.stats().inFlight).toBe(0);
  });
});

describe('graceful shutdown, in-process', () => {
  it('an answer finishing during the drain says Connection: close, so a keep-alive client does not reuse the connection', async () => {
    let h: Harness | undefined = await startHarness({ origins: [{ behaviours: { '/slow': { kind: 'slow', firstByteMs: 400, then: { cacheControl: 'no-store' } } } }] });
    const agent = new http.Agent({ keepAlive: true });
    try {
      const res = new Promise<http.IncomingMessage>((resolve) => http.get(`${h!.url}/slow`, { agent }, (r) => r.resume().on('end', () => resolve(r))));
      await waitFor(() => h!.origins[0]!.count('/slow') === 1);
      const stopping = h.proxy.stop();
      const r = await res;
      expect(r.statusCode).toBe(200);
      expect(r.headers['connection']).toBe('close');
      await stopping;
    } finally {
      agent.destroy();
      await h.close();
      h = undefined;
    }
  });
});

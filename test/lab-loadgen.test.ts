// The lab's load generator (in process and as its own process), the origin behaviours it relies on
// (probabilistic slow and reset-mid-body, the health endpoint), and `lacquer lab origin` as a process.
import { spawn } from 'node:child_process';
import http from 'node:http';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { checksum } from '../src/lab/checksum.ts';
import { runLoad } from '../src/lab/loadgen.ts';
import { startOrigin, type Origin } from '../src/lab/origin.ts';
import type { LoadPlan, Sample } from '../src/lab/plan.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const origins: Origin[] = [];
const servers: http.Server[] = [];
const dirs: string[] = [];

afterEach(async () => {
  await Promise.all(origins.splice(0).map((o) => o.close()));
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    s.close();
  }
});
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

class Lines extends Writable {
  readonly samples: Sample[] = [];
  override _write(chunk: Buffer, _e: BufferEncoding, cb: () => void): void {
    for (const l of chunk.toString().split('\n')) if (l) this.samples.push(JSON.parse(l) as Sample);
    cb();
  }
}

const plan = (target: string, phases: LoadPlan['phases'], extra: Partial<LoadPlan> = {}): LoadPlan => ({
  target, startAt: Date.now() + 100, phases, requestTimeoutMs: 2000, maxInFlight: 100, out: '-', ...extra,
});

describe('load generator', () => {
  it('verifies bodies against x-lab-checksum: ok, corrupted, truncated, and classifies Proxy-Status', async () => {
    const o = await startOrigin({
      behaviours: {
        '/cut': { kind: 'reset-mid-body', afterBytes: 100, then: { bodySize: 5000 } },
        '/503': { kind: 'error', status: 503, headers: { 'proxy-status': 'lacquer; error=connection_refused; next-hop="app1"' } },
      },
    });
    origins.push(o);
    // A "proxy" that serves a body whose bytes differ from its checksum: a corrupted cache object.
    const bad = http.createServer((_req, res) => {
      res.writeHead(200, { 'x-lab-checksum': checksum(Buffer.from('the original')), 'content-length': '12' });
      res.end('not original');
    });
    servers.push(bad);
    await new Promise<void>((r) => bad.listen(0, '127.0.0.1', r));
    const badUrl = `http://127.0.0.1:${(bad.address() as { port: number }).port}`;

    const out = new Lines();
    const r1 = await runLoad(plan(o.url, [{ kind: 'burst', name: 'b', atMs: 0, count: 3, paths: ['/ok', '/cut', '/503'] }]), out);
    const r2 = await runLoad(plan(badUrl, [{ kind: 'burst', name: 'b', atMs: 0, count: 1, paths: ['/x'] }]), out);
    expect(r1.requests + r2.requests).toBe(4);
    const by = Object.fromEntries(out.samples.map((s) => [s.p, s]));
    expect(by['/ok']).toMatchObject({ s: 200, v: 'ok', c: '' });
    expect(by['/cut']!.s).toBe(0);
    expect(by['/cut']!.e).toMatch(/^body:/);
    expect(by['/503']).toMatchObject({ s: 503, c: 'connection_refused', v: 'none' });
    expect(by['/x']).toMatchObject({ s: 200, v: 'bad' });
    for (const s of out.samples) expect(s.ms).toBeGreaterThan(0);
  });

  it('closed, paced, rate and burst phases stay within their windows and counts', async () => {
    const o = await startOrigin({ behaviours: { '*': { kind: 'normal', delayMs: 20 } } });
    origins.push(o);
    const out = new Lines();
    const started = Date.now();
    await runLoad(
      plan(o.url, [
        { kind: 'closed', name: 'closed', fromMs: 0, toMs: 400, concurrency: 3, paths: ['/a', '/b'] },
        { kind: 'paced', name: 'paced', fromMs: 0, toMs: 400, workers: 2, intervalMs: { min: 100, max: 100 }, paths: ['/p'] },
        { kind: 'rate', name: 'rate', fromMs: 0, toMs: 500, rps: 20, paths: ['/r'] },
        { kind: 'burst', name: 'burst', atMs: 200, count: 25, paths: ['/h'] },
      ]),
      out,
    );
    expect(Date.now() - started).toBeLessThan(3000);
    const n = (ph: string) => out.samples.filter((s) => s.ph === ph).length;
    // closed: 3 clients × ~400 ms / ≥20 ms each
    expect(n('closed')).toBeGreaterThan(6);
    expect(n('closed')).toBeLessThanOrEqual(3 * 21);
    // paced: 2 workers × one request per 100 ms over 400 ms
    expect(n('paced')).toBeGreaterThanOrEqual(4); // 8 on an idle machine; timers slip on a busy one
    expect(n('paced')).toBeLessThanOrEqual(10);
    expect(n('rate')).toBe(10);
    expect(n('burst')).toBe(25);
    const burst = out.samples.filter((s) => s.ph === 'burst');
    // All 25 start together: well under the 500 ms a paced phase would spread them over (250 ms of slack for a loaded CI).
    expect(Math.max(...burst.map((s) => s.t)) - Math.min(...burst.map((s) => s.t))).toBeLessThan(250);
    expect(out.samples.every((s) => s.s === 200 && s.v === 'ok')).toBe(true);
    expect(out.samples.filter((s) => s.ph !== 'rate').every((s) => s.t >= -5 && s.t < 450)).toBe(true);
  });

  it('runs as its own process from a plan file and writes JSON lines to the plan\'s file', async () => {
    const o = await startOrigin();
    origins.push(o);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'lacquer-lab-loadgen-'));
    dirs.push(dir);
    const out = path.join(dir, 'samples.jsonl');
    const file = path.join(dir, 'plan.json');
    writeFileSync(file, JSON.stringify(plan(o.url, [{ kind: 'burst', name: 'b', atMs: 0, count: 5, paths: ['/z'] }], { startAt: Date.now() + 500, out })));
    const child = spawn(process.execPath, [path.join(ROOT, 'src/lab/loadgen.ts'), file], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const code = await new Promise<number | null>((resolve) => {
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      child.on('exit', (c) => {
        clearTimeout(t);
        resolve(c);
      });
    });
    expect(code, err).toBe(0);
    expect(JSON.parse(err.trim().split('\n').at(-1)!)).toMatchObject({ done: true, requests: 5 });
    const lines = readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Sample);
    expect(lines).toHaveLength(5);
    expect(lines.every((s) => s.s === 200 && s.v === 'ok' && s.p === '/z')).toBe(true);
  });
});

describe('origin behaviours used by the scenarios', () => {
  it('slow and reset-mid-body with a probability affect only that share of requests', async () => {
    const o = await startOrigin({
      seed: 42,
      behaviours: {
        '/slow': { kind: 'slow', firstByteMs: 150, probability: 0.3, then: { bodySize: 100 } },
        '/cut': { kind: 'reset-mid-body', afterBytes: 10, probability: 0.3, then: { bodySize: 2000 } },
      },
    });
    origins.push(o);
    let slow = 0;
    let cut = 0;
    for (let i = 0; i < 20; i++) {
      const t = performance.now();
      const r = await request(`${o.url}/slow`);
      await r.body.arrayBuffer();
      if (performance.now() - t >= 140) slow++;
      try {
        const c = await request(`${o.url}/cut`);
        await c.body.arrayBuffer();
      } catch {
        cut++;
      }
    }
    expect(slow).toBeGreaterThan(0);
    expect(slow).toBeLessThan(20);
    expect(cut).toBeGreaterThan(0);
    expect(cut).toBeLessThan(20);
    expect(() => o.set('/x', { kind: 'slow', firstByteMs: 1, probability: 2 } as never)).toThrow(/probability/);
  });

  it('answers the health path whatever the behaviours, without counting it', async () => {
    const o = await startOrigin({ behaviours: { '*': { kind: 'hang' } } });
    origins.push(o);
    const r = await request(`${o.url}/__lab/health`);
    expect(r.statusCode).toBe(200);
    await r.body.text();
    expect(o.count()).toBe(0);
  });
});

describe('lacquer lab origin (a process)', () => {
  it('serves the behaviour given on the command line, takes control requests, refuses on SIGUSR2, exits on SIGTERM', async () => {
    const child = spawn(
      process.execPath,
      [path.join(ROOT, 'src/cli/main.ts'), 'lab', 'origin', '--port', '0', '--port', '0', '--behaviour', '{"/a":{"kind":"normal","body":"hello\\n","cacheControl":"max-age=5"}}', '--keepalive', '800'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const kill = setTimeout(() => child.kill('SIGKILL'), 12_000);
    try {
      const ready = await new Promise<{ origins: { port: number; url: string }[] }>((resolve, reject) => {
        child.stdout.once('data', (c: Buffer) => resolve(JSON.parse(c.toString().split('\n')[0]!)));
        child.once('exit', (code) => reject(new Error(`exited ${code}`)));
      });
      expect(ready.origins).toHaveLength(2);
      const [a, b] = ready.origins;
      const r = await request(`${a!.url}/a`);
      expect(await r.body.text()).toBe('hello\n');
      expect(r.headers['cache-control']).toBe('max-age=5');
      // Control endpoint: change the behaviour of /a on the second origin only.
      const put = await request(`${b!.url}/__lab/behaviour?path=/a`, { method: 'PUT', body: JSON.stringify({ kind: 'error', status: 502 }) });
      expect(put.statusCode).toBe(200);
      await put.body.text();
      const r2 = await request(`${b!.url}/a`);
      expect(r2.statusCode).toBe(502);
      await r2.body.text();
      const stats = await request(`${b!.url}/__lab/stats`);
      expect(((await stats.body.json()) as { total: number }).total).toBe(1);

      child.kill('SIGUSR2');
      let refused = false;
      for (let i = 0; i < 50 && !refused; i++) {
        await new Promise((res) => setTimeout(res, 40));
        refused = await request(`${a!.url}/a`).then(
          async (x) => (await x.body.text(), false),
          (e: { code?: string }) => e.code === 'ECONNREFUSED',
        );
      }
      expect(refused).toBe(true);

      const code = await new Promise<number | null>((resolve) => {
        child.once('exit', (c) => resolve(c));
        child.kill('SIGTERM');
      });
      expect(code).toBe(0);
    } finally {
      clearTimeout(kill);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});

// Memory within its bound (issue 12 part 3): a stored body is one allocation of exactly its size, made
// without keeping the origin's read buffers; the store's accounted bytes are those of what it holds; and
// `lacquer serve` runs with the heap flags and allocator settings that keep its RSS down.
import { createServer, type Server } from 'node:http';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BodyCollector } from '../src/pipeline/store.ts';
import { startHarness, type Harness } from './helpers.ts';
import { lacquer, waitFor } from './spawn-node.ts';

const KiB = 1024;

/** Every byte depends on its position, so a misplaced or stale chunk shows. */
function pattern(size: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) b[i] = (i * 7 + (i >> 8)) & 0xff;
  return b;
}

describe('BodyCollector', () => {
  it('copies each chunk as it comes when the length is announced: a chunk reused by its owner afterwards does not change the body', () => {
    const c = new BodyCollector(1024, 6);
    const first = Buffer.from('abc');
    expect(c.add(first)).toBe(true);
    first.fill('x'); // undici's read buffer is the socket's, not ours
    expect(c.add(Buffer.from('def'))).toBe(true);
    const body = c.body();
    expect(body.toString()).toBe('abcdef');
    expect(body.buffer.byteLength).toBe(6);
  });

  it('stores exactly the bytes received when the origin sends more or less than announced', () => {
    const more = new BodyCollector(1024, 4);
    for (const s of ['ab', 'cd', 'ef']) more.add(Buffer.from(s));
    expect(more.body().toString()).toBe('abcdef');
    expect(more.body().buffer.byteLength).toBe(6);
    const less = new BodyCollector(1024, 10);
    less.add(Buffer.from('abc'));
    expect(less.body().toString()).toBe('abc');
    expect(less.body().buffer.byteLength).toBe(3);
  });

  it('without a length, the chunks become one allocation of exactly the body size (not a slice of the shared pool)', () => {
    const c = new BodyCollector(1024);
    for (const s of ['ab', 'cd', 'ef']) c.add(Buffer.from(s));
    const body = c.body();
    expect(body.toString()).toBe('abcdef');
    expect(body.buffer.byteLength).toBe(6);
  });

  it('past the cap the copy is dropped', () => {
    const c = new BodyCollector(4, 3);
    expect(c.add(Buffer.from('abc'))).toBe(true);
    expect(c.add(Buffer.from('de'))).toBe(false);
    expect(c.add(Buffer.from('f'))).toBe(false);
  });
});

describe('stored bodies over real sockets', () => {
  let origin: Server;
  let h: Harness;
  const BIG = pattern(100 * KiB);
  const SMALL = pattern(3 * KiB);

  beforeAll(async () => {
    origin = createServer((req, res) => {
      const path = req.url ?? '/';
      const body = path.includes('small') ? SMALL : BIG;
      const headers: Record<string, string> = { 'cache-control': 'max-age=600', 'content-type': 'application/octet-stream' };
      if (!path.includes('chunked')) headers['content-length'] = String(body.length);
      res.writeHead(200, headers);
      if (path.includes('one')) return void res.end(body);
      // Many small writes, each after a pause so the proxy reads them one by one.
      let at = 0;
      const step = path.includes('small') ? 512 : 4 * KiB;
      const next = () => {
        if (at >= body.length) return void res.end();
        res.write(body.subarray(at, at + step));
        at += step;
        setTimeout(next, 1);
      };
      next();
    });
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(origin.address() as AddressInfo).port}`;
    // 1 MiB: room for 8 of the 100 KiB objects with their headers and bookkeeping.
    h = await startHarness({ origins: [], config: { backends: [{ name: 'app', url }], cache: { memory: '1MiB', max_object_share: 0.5 }, compression: { enabled: false } } });
  });

  afterAll(async () => {
    await h.close();
    await new Promise<void>((r) => origin.close(() => r()));
  });

  /** The object as stored, by its path. */
  const stored = (path: string) => [...h.proxy.ctx.store.entries()].map(([, o]) => o).find((o) => o.primary.endsWith(path));

  it.each(['/drip/length', '/drip/chunked', '/one/small', '/drip/small', '/drip/chunked/small'])('%s: stored once, in its own allocation of exactly its size, byte for byte', async (path) => {
    const want = path.includes('small') ? SMALL : BIG;
    const miss = await h.get(path);
    expect(miss.status).toBe(200);
    expect(Buffer.compare(miss.raw, want)).toBe(0);
    const o = stored(path);
    expect(o, 'object stored').toBeDefined();
    expect(o!.body.length).toBe(want.length);
    // Not a view into a socket read buffer or a slice of Node's 64 KiB Buffer pool (Buffer.poolSize in Node 24), either of which keeps
    // other memory alive for as long as the object is cached.
    expect(o!.body.byteOffset).toBe(0);
    expect(o!.body.buffer.byteLength).toBe(want.length);
    const hit = await h.get(path);
    expect(String(hit.headers['cache-status'])).toMatch(/hit/);
    expect(Buffer.compare(hit.raw, want)).toBe(0);
  });

  it('the accounted bytes are the sum of what is stored, within cache.memory, and shrink when objects are evicted or purged', async () => {
    for (let i = 0; i < 20; i++) expect((await h.get(`/one/evict-${i}`)).status).toBe(200);
    const objects = [...h.proxy.ctx.store.entries()].map(([, o]) => o);
    const stats = h.proxy.ctx.store.stats();
    expect(stats.evictions).toBeGreaterThan(0);
    expect(stats.objects).toBe(objects.length);
    expect(stats.bytes).toBe(objects.reduce((n, o) => n + o.size, 0));
    expect(stats.bytes).toBeLessThanOrEqual(stats.maxBytes);
    // Each object is charged its body (and its header fields and bookkeeping on top).
    for (const o of objects) expect(o.size).toBeGreaterThan(o.body.length);
    const last = objects[0]!;
    expect(h.proxy.ctx.store.removeAll(last.primary)).toBe(1);
    expect(h.proxy.ctx.store.stats().bytes).toBe(stats.bytes - last.size);
  });
});

describe('lacquer serve: heap flags and allocator settings', () => {
  const linux = process.platform === 'linux' && typeof (process as { execve?: unknown }).execve === 'function';

  async function served(env: NodeJS.ProcessEnv, workers: number | 'auto' = 1): Promise<{ argv: string[]; env: string[]; children: string[][] }> {
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'lacquer-memory-'));
    try {
      const cfg = join(dir, 'l.yaml');
      writeFileSync(cfg, `workers: ${workers}\nlisten: 127.0.0.1:0\nbackends:\n  - name: app\n    url: http://127.0.0.1:9\nlog:\n  access: off\nadmin:\n  enabled: false\n`);
      const run = lacquer(['serve', '-c', cfg], { env, timeoutMs: 20_000 });
      // The same pid serves: the exec replaced the process instead of starting another.
      await waitFor(() => /lacquer listening/.test(run.stdout() + run.stderr()), 10_000, () => run.stderr());
      const pid = run.child.pid!;
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      const environ = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
      const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
      const children = kids.map((k) => readFileSync(`/proc/${k}/cmdline`, 'utf8').split('\0'));
      run.child.kill('SIGTERM');
      await run.exited;
      return { argv, env: environ, children };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  it.skipIf(!linux)('re-executes itself once with a 16 MiB semi-space and two malloc arenas (same pid)', async () => {
    const env = { ...process.env };
    delete env.MALLOC_ARENA_MAX;
    delete env.NODE_OPTIONS;
    const p = await served(env);
    expect(p.argv).toContain('--max-semi-space-size=16');
    expect(p.env).toContain('MALLOC_ARENA_MAX=2');
    // The compile cache beside the installed packages (no TypeScript stripper loaded at the next start).
    expect(p.env.find((e) => e.startsWith('NODE_COMPILE_CACHE='))).toMatch(/node_modules\/\.cache\/lacquer-compile$/);
  });

  it.skipIf(!linux)('with workers, the primary re-executes itself with a 1 MiB semi-space and gives its workers 16 MiB', async () => {
    const env = { ...process.env };
    delete env.MALLOC_ARENA_MAX;
    delete env.NODE_OPTIONS;
    const p = await served(env, 2);
    expect(p.argv).toContain('--max-semi-space-size=1');
    expect(p.argv).not.toContain('--max-semi-space-size=16');
    expect(p.children).toHaveLength(2);
    for (const c of p.children) {
      expect(c).toContain('--max-semi-space-size=16');
      expect(c).not.toContain('--max-semi-space-size=1');
    }
  });

  it.skipIf(!linux)("keeps the operator's choice of each", async () => {
    const p = await served({ ...process.env, MALLOC_ARENA_MAX: '4', NODE_OPTIONS: '--max-semi-space-size=32', NODE_DISABLE_COMPILE_CACHE: '1' });
    expect(p.argv.some((a) => a.startsWith('--max-semi-space-size'))).toBe(false);
    expect(p.env).toContain('MALLOC_ARENA_MAX=4');
    expect(p.env).not.toContain('MALLOC_ARENA_MAX=2');
    expect(p.env.some((e) => e.startsWith('NODE_COMPILE_CACHE='))).toBe(false);
  });
});

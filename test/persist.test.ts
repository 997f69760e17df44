// Warm restart (issue 5): fill, restart, the first requests are hits and the origin sees none; a
// corrupted or truncated snapshot is detected, logged and skipped — never served.
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { validateConfig } from '../src/config/load.ts';
import { startProxy, type Proxy } from '../src/main.ts';
import { startOrigin, type Origin } from '../src/lab/origin.ts';
import { verifyChecksum } from '../src/lab/checksum.ts';
import { LogCapture } from './helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'lacquer-persist-'));
let origin: Origin | undefined;
let proxy: Proxy | undefined;
const agent = new Agent();
afterEach(async () => {
  await proxy?.stop();
  await origin?.close();
  proxy = origin = undefined;
});

async function start(file: string, log = new LogCapture()) {
  const config = validateConfig({ listen: '127.0.0.1:0', admin: { enabled: false }, backends: [{ name: 'app1', url: origin!.url }], cache: { persist: { path: file, interval: 0 } } });
  proxy = await startProxy(config, { logDestination: log });
  return log;
}

async function get(path: string) {
  // A stable Host: the cache key is host + path, and the proxy's port changes across restarts here.
  const r = await request(`${proxy!.url}${path}`, { dispatcher: agent, headers: { host: 'www.example.test' } });
  const body = Buffer.from(await r.body.arrayBuffer());
  return { status: r.statusCode, cache: String(r.headers['cache-status']), ok: verifyChecksum(r.headers['x-lab-checksum'], body) };
}

const paths = Array.from({ length: 20 }, (_, i) => `/obj/${i}`);

async function fillAndStop(file: string) {
  origin = await startOrigin({ behaviours: { '*': { kind: 'normal', cacheControl: 'max-age=300', bodySize: 4096, etag: '"v1"' } } });
  await start(file);
  for (const p of paths) expect((await get(p)).status).toBe(200);
  await proxy!.stop();
  proxy = undefined;
  origin.reset();
}

describe('warm restart', () => {
  it('restores the cache: after a restart the first requests are hits and the origin sees none', async () => {
    const file = join(dir, 'a.snap');
    await fillAndStop(file);
    const log = await start(file);
    for (const p of paths) {
      const r = await get(p);
      expect(r.cache).toMatch(/^lacquer; hit/);
      expect(r.ok).toBe(true);
    }
    expect(origin!.count()).toBe(0);
    expect(log.lines.some((l) => String(l.msg).includes('cache snapshot loaded: 20 objects'))).toBe(true);
  });

  it('a corrupted snapshot is detected, logged and skipped', async () => {
    const file = join(dir, 'b.snap');
    await fillAndStop(file);
    const buf = readFileSync(file);
    buf[Math.floor(buf.length / 2)]! ^= 0xff; // flip one byte in the middle of a body
    writeFileSync(file, buf);
    const log = await start(file);
    expect(log.lines.some((l) => l.level === 'error' && String(l.msg).includes('corrupt'))).toBe(true);
    const r = await get(paths[0]!);
    expect(r.cache).toMatch(/fwd=uri-miss/);
    expect(r.ok).toBe(true);
    expect(origin!.count()).toBe(1);
  });

  it('a truncated snapshot is detected and skipped', async () => {
    const file = join(dir, 'c.snap');
    await fillAndStop(file);
    const buf = readFileSync(file);
    writeFileSync(file, buf.subarray(0, buf.length - 1000));
    const log = await start(file);
    expect(log.lines.some((l) => l.level === 'error' && String(l.msg).includes('corrupt'))).toBe(true);
    expect((await get(paths[3]!)).cache).toMatch(/fwd=uri-miss/);
  });

  it('starts cold when there is no snapshot yet', async () => {
    origin = await startOrigin();
    const log = await start(join(dir, 'none.snap'));
    expect(log.lines.some((l) => String(l.msg).includes('starting cold'))).toBe(true);
  });
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

// The hit path of issue 12: a fresh hit is answered synchronously from a head kept with the object
// (pipeline/deliver.ts fullHead), and the listener tracks it without a promise (server/listener.ts). These
// tests pin what that path must still carry, so the lean path cannot drift from what the cache promises.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfigFile } from '../src/config/load.ts';
import { startOrigin, type Origin } from '../src/lab/origin.ts';
import { startProxy, type Proxy } from '../src/main.ts';
import { LogCapture, sleep, startHarness, type Harness, type Reply } from './helpers.ts';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

/** Vary members, lowercased, in a set (order is not meaningful, RFC 9110 §12.5.5). */
const varySet = (r: Reply) =>
  new Set(
    String(r.headers.vary ?? '')
      .split(',')
      .map((s) => s.trim().toLowerCase())
      .filter(Boolean),
  );

const ORIGIN = {
  behaviours: {
    '/o': { kind: 'normal' as const, cacheControl: 'max-age=60', etag: '"v1"', bodySize: 3000, headers: { 'x-app': 'one', vary: 'Accept-Language', 'content-type': 'text/plain' } },
  },
};

describe('a fresh hit', () => {
  it('carries the stored fields, Vary and ETag of the miss, its own Age, Cache-Status and request id, and no Proxy-Status', async () => {
    h = await startHarness({ origins: [ORIGIN] });
    const miss = await h.get('/o');
    const hits = [await h.get('/o'), await h.get('/o')];
    expect(h.origins[0]!.count('/o')).toBe(1);
    const ids = new Set([miss, ...hits].map((r) => r.headers['x-request-id']));
    expect(ids.size).toBe(3); // one id per request, never one kept with the object
    for (const hit of hits) {
      expect(hit.status).toBe(200);
      expect(hit.body).toBe(miss.body);
      expect(hit.headers.etag).toBe('"v1"');
      expect(hit.headers['x-app']).toBe('one');
      expect(hit.headers['content-type']).toBe(miss.headers['content-type']);
      expect(varySet(hit)).toEqual(varySet(miss));
      expect(varySet(hit)).toEqual(new Set(['accept-language', 'accept-encoding']));
      expect(hit.headers['content-length']).toBe('3000');
      expect(hit.headers['accept-ranges']).toBe('bytes');
      expect(hit.headers.age).toMatch(/^\d+$/);
      expect(hit.headers['cache-status']).toMatch(/^lacquer; hit; ttl=(59|60)$/);
      expect(hit.headers['proxy-status']).toBeUndefined();
      // Each of the answer's own fields once, none left empty (the kept head has slots for them).
      for (const name of ['x-request-id', 'cache-status', 'age', 'via', 'content-length']) expect(typeof hit.headers[name]).toBe('string');
      for (const [name, v] of Object.entries(hit.headers)) expect(v, name).not.toBe('');
      const line = await h.log.forRequest(String(hit.headers['x-request-id']));
      expect(line).toMatchObject({ served: 'hit', status: 200, cache: hit.headers['cache-status'], bytes: 3000 });
    }
  });

  it('in another coding: the coded body, with one X-Request-Id and one Cache-Status, and a weak ETag', async () => {
    h = await startHarness({ origins: [ORIGIN] });
    await h.get('/o');
    await h.get('/o', { 'accept-encoding': 'gzip' }); // the first coded answer starts making the stored forms
    let hit: Reply | undefined;
    for (let i = 0; i < 50; i++) {
      hit = await h.get('/o', { 'accept-encoding': 'gzip' });
      if (hit.headers['content-length'] !== undefined) break; // the stored gzip form (a streamed one has no length)
      await sleep(10);
    }
    expect(hit!.headers['content-encoding']).toBe('gzip');
    expect(hit!.headers.etag).toBe('W/"v1"');
    expect(typeof hit!.headers['x-request-id']).toBe('string');
    expect(hit!.headers['cache-status']).toMatch(/^lacquer; hit; ttl=(59|60)$/);
    expect(varySet(hit!)).toEqual(new Set(['accept-language', 'accept-encoding']));
    expect(Number(hit!.headers['content-length'])).toBe(hit!.raw.length);
    expect(h.origins[0]!.count('/o')).toBe(1);
  });

  it('to HEAD: the head a GET gets, without a body', async () => {
    h = await startHarness({ origins: [ORIGIN] });
    await h.get('/o');
    const get = await h.get('/o');
    const head = await h.get('/o', {}, 'HEAD');
    expect(head.status).toBe(200);
    expect(head.raw.length).toBe(0);
    expect(head.headers['content-length']).toBe(get.headers['content-length']);
    expect(head.headers.etag).toBe(get.headers.etag);
    expect(head.headers['cache-status']).toMatch(/^lacquer; hit; /);
    const line = await h.log.forRequest(String(head.headers['x-request-id']));
    expect(line).toMatchObject({ method: 'HEAD', served: 'hit', bytes: 0 });
  });

  it('is never served once banned or purged: the next request goes to the origin', async () => {
    h = await startHarness({ origins: [ORIGIN] });
    await h.get('/o');
    expect((await h.get('/o')).headers['cache-status']).toMatch(/; hit; /);
    const host = new URL(h.url).host;
    h.proxy.ctx.invalidator.ban({ kind: 'prefix', value: `${host}/o` }, 'hard');
    const afterBan = await h.get('/o');
    expect(afterBan.headers['cache-status']).toMatch(/fwd=uri-miss/);
    expect(h.origins[0]!.count('/o')).toBe(2);
    expect((await h.get('/o')).headers['cache-status']).toMatch(/; hit; /); // stored after the ban
    h.proxy.ctx.invalidator.purgeUrl(`${host}/o`, 'hard');
    expect((await h.get('/o')).headers['cache-status']).toMatch(/fwd=uri-miss/);
    expect(h.origins[0]!.count('/o')).toBe(3);
  });

  it('pipelined on one connection: answered in order, each with its own access line', async () => {
    h = await startHarness({ origins: [ORIGIN] });
    await h.get('/o');
    const { port } = new URL(h.url);
    const raw = await new Promise<string>((resolve, reject) => {
      const s = net.connect(Number(port), '127.0.0.1');
      let got = '';
      s.on('data', (d: Buffer) => (got += d.toString('latin1')));
      s.on('end', () => resolve(got));
      s.on('error', reject);
      const req = (id: string, last = false) => `GET /o HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nX-Request-Id: ${id}\r\n${last ? 'Connection: close\r\n' : ''}\r\n`;
      s.write(req('p1') + req('p2') + req('p3', true));
    });
    expect([...raw.matchAll(/x-request-id: (p\d)/g)].map((m) => m[1])).toEqual(['p1', 'p2', 'p3']);
    expect(raw.match(/^HTTP\/1\.1 200 OK/gm)).toHaveLength(3);
    for (const id of ['p1', 'p2', 'p3']) expect(await h.log.forRequest(id)).toMatchObject({ served: 'hit', status: 200 });
  });
});

describe('the head kept with an object', () => {
  let proxy: Proxy | undefined;
  let origin: Origin | undefined;
  const dir = mkdtempSync(join(tmpdir(), 'lacquer-hitpath-'));
  afterEach(async () => {
    await proxy?.stop();
    await origin?.close();
    proxy = origin = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  it('is made again after a reload changes compression: Vary: Accept-Encoding goes with it', async () => {
    origin = await startOrigin(ORIGIN);
    const file = join(dir, 'lacquer.yaml');
    const write = (compress: boolean) =>
      writeFileSync(file, [`listen: 127.0.0.1:0`, 'admin:', '  listen: 127.0.0.1:0', 'backends:', `  - { name: app, url: "${origin!.url}" }`, 'compression:', `  enabled: ${compress}`, ''].join('\n'));
    write(true);
    proxy = await startProxy(loadConfigFile(file), { configFile: file, logDestination: new LogCapture() });
    const get = async () => {
      const r = await fetch(`${proxy!.url}/o`);
      await r.arrayBuffer();
      return r.headers;
    };
    await get();
    const before = await get();
    expect(before.get('cache-status')).toMatch(/; hit; /);
    expect(before.get('vary')).toMatch(/accept-encoding/i);
    write(false);
    expect((await proxy.config.reload()).ok).toBe(true);
    const after = await get();
    expect(after.get('cache-status')).toMatch(/; hit; /); // the same object, kept across the reload
    expect(after.get('vary')).toBe('Accept-Language');
    expect(origin.count('/o')).toBe(1);
  });
});

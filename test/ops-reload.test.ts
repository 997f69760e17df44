// Configuration changes without downtime (issue 5): reload a valid, an invalid and an all-sick config
// under load with zero failed requests during the switch; rollback; the cache survives a reload.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { loadConfigFile } from '../src/config/load.ts';
import { maskSecrets } from '../src/config/secrets.ts';
import { startProxy, type Proxy } from '../src/main.ts';
import { startOrigin, type Origin } from '../src/lab/origin.ts';
import { LogCapture } from './helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'lacquer-reload-'));
const agent = new Agent();
let proxy: Proxy | undefined;
const origins: Origin[] = [];
afterEach(async () => {
  await proxy?.stop();
  await Promise.all(origins.splice(0).map((o) => o.close()));
  proxy = undefined;
});

const yaml = (backends: string[], extra = '') =>
  `listen: 127.0.0.1:0\nadmin: { enabled: false }\nbackends:\n${backends.map((u, i) => `  - name: b${i}\n    url: ${u}\n`).join('')}${extra}`;

async function start(file: string, text: string) {
  writeFileSync(file, text);
  proxy = await startProxy(loadConfigFile(file), { configFile: file, logDestination: new LogCapture() });
}

async function get(path: string) {
  const r = await request(`${proxy!.url}${path}`, { dispatcher: agent });
  await r.body.dump();
  return r.statusCode;
}

/** Steady load of uncacheable GETs until `stop()`; counts non-2xx answers and transport errors. */
function load(concurrency = 6) {
  let running = true;
  const stats = { ok: 0, failed: 0 };
  const workers = Array.from({ length: concurrency }, async () => {
    const deadline = Date.now() + 10_000; // bounded even if stop() is never called
    while (running && Date.now() < deadline) {
      try {
        const s = await get('/pass');
        if (s >= 200 && s < 400) stats.ok++;
        else stats.failed++;
      } catch {
        stats.failed++;
      }
    }
  });
  return {
    stats,
    async stop() {
      running = false;
      await Promise.all(workers);
    },
  };
}

describe('reload and rollback', () => {
  it('switches pools atomically under load with zero failed requests; refuses invalid and all-sick configs; rolls back', async () => {
    const uncacheable = { behaviours: { '*': { kind: 'normal' as const, cacheControl: 'no-store' } } };
    const a = await startOrigin(uncacheable);
    const b = await startOrigin(uncacheable);
    const dead = await startOrigin(uncacheable);
    await dead.refuse();
    origins.push(a, b, dead);
    const file = join(dir, 'lacquer.yaml');
    await start(file, yaml([a.url]));
    const l = load();
    await new Promise((r) => setTimeout(r, 200));

    // valid: a → b
    writeFileSync(file, yaml([b.url]));
    const r1 = await proxy!.config.reload();
    expect(r1).toMatchObject({ ok: true, version: 2 });
    await new Promise((r) => setTimeout(r, 200));
    const bBefore = b.count();
    const aAfterSwitch = a.count();
    await new Promise((r) => setTimeout(r, 200));
    expect(b.count()).toBeGreaterThan(bBefore);
    expect(a.count()).toBe(aAfterSwitch); // nothing goes to the old pool any more

    // invalid: refused, the running config stays
    writeFileSync(file, `${yaml([b.url])}cache: { memory: lots }\n`);
    const r2 = await proxy!.config.reload();
    expect(r2.ok).toBe(false);
    expect(!r2.ok && r2.problems?.join('\n')).toMatch(/cache\.memory: "lots" — a size like/);
    expect(proxy!.config.current.backends[0]!.url).toBe(b.url);

    // all backends fail their first probe with reload.require_healthy: refused
    writeFileSync(file, yaml([dead.url], 'reload: { require_healthy: true }\n'));
    const r3 = await proxy!.config.reload();
    expect(r3.ok).toBe(false);
    expect(!r3.ok && r3.reason).toMatch(/every backend failed its first probe in pool default/);

    // rollback: back to a
    const r4 = await proxy!.config.rollback();
    expect(r4).toMatchObject({ ok: true, source: 'rollback' });
    expect(proxy!.config.current.backends[0]!.url).toBe(a.url);
    const aBefore = a.count();
    await new Promise((r) => setTimeout(r, 200));
    await l.stop();
    expect(a.count()).toBeGreaterThan(aBefore);
    expect(l.stats.ok).toBeGreaterThan(50);
    expect(l.stats.failed).toBe(0);
    // nothing further back than the start
    expect((await proxy!.config.rollback()).ok).toBe(false);
  });

  it('keeps the cache across a reload', async () => {
    const o = await startOrigin({ behaviours: { '*': { kind: 'normal', cacheControl: 'max-age=300' } } });
    origins.push(o);
    const file = join(dir, 'keep.yaml');
    await start(file, yaml([o.url]));
    expect(await get('/c')).toBe(200);
    writeFileSync(file, yaml([o.url], 'errors: { retry_after: 9s }\n'));
    expect((await proxy!.config.reload()).ok).toBe(true);
    expect(await get('/c')).toBe(200);
    expect(o.count('/c')).toBe(1);
    expect(proxy!.ctx.config.errors.retry_after).toBe(9000);
  });

  it('warns about settings that need a restart, and masks secrets', async () => {
    const o = await startOrigin();
    origins.push(o);
    const file = join(dir, 'warn.yaml');
    await start(file, yaml([o.url]));
    writeFileSync(file, yaml([o.url]).replace('listen: 127.0.0.1:0', 'listen: 127.0.0.1:1'));
    const r = await proxy!.config.reload();
    expect(r.ok && r.warnings).toEqual(['listen changed: takes effect on restart only']);
    expect(maskSecrets({ admin: { token: 's3cret' }, alerts: { webhooks: [{ url: 'http://user:pw@127.0.0.1:1/x' }] } })).toEqual({
      admin: { token: '***' },
      alerts: { webhooks: [{ url: 'http://***@127.0.0.1:1/x' }] },
    });
  });
});

process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

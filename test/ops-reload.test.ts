// Configuration changes without downtime (issue 5): reload a valid, an invalid and an all-sick config
// under load with zero failed requests during the switch; rollback; the cache survives a reload.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { loadConfigFile } from '../src/config/load.ts';
import { maskSecrets } from '../src/config/secrets.ts';
import { startProxy, type Proxy } from '../src/main.ts';
import { startOrigin, type Origin } from '../src/lab/origin.ts';
import { LogCapture } from './helpers.ts';
import { startReceiver, type Receiver } from './admin-helpers.ts';

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
  const log = new LogCapture();
  proxy = await startProxy(loadConfigFile(file), { configFile: file, logDestination: log });
  return log;
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
    expect(r.ok && r.restart_required).toEqual(['listen']);
    expect(r.ok && r.warnings).toEqual(['listen changed (127.0.0.1:0 → 127.0.0.1:1): needs a restart; 127.0.0.1:0 stays in effect until then']);
    expect(maskSecrets({ admin: { token: 's3cret' }, alerts: { webhooks: [{ url: 'http://user:pw@127.0.0.1:1/x' }] } })).toEqual({
      admin: { token: '***' },
      alerts: { webhooks: [{ url: 'http://***@127.0.0.1:1/x' }] },
    });
  });
});

describe('reload keeps what the operator set and applies alerts and admin.token (issue 11 item 15)', () => {
  const TOKEN = 'reload-test-token-0123456789';
  const receivers: Receiver[] = [];
  afterEach(async () => {
    await Promise.all(receivers.splice(0).map((r) => r.close()));
  });
  const withAdmin = (backends: string[], extra = '') => yaml(backends, extra).replace('admin: { enabled: false }', 'admin: { listen: "127.0.0.1:0" }');
  const adminGet = async (path: string, token?: string) => {
    const r = await request(`${proxy!.plane.admin!.url}${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
    return { status: r.statusCode, body: (await r.body.json()) as Record<string, unknown> };
  };

  it('a backend drained through the API stays drained across a reload of the unchanged file, and across a rollback', async () => {
    const o1 = await startOrigin();
    const o2 = await startOrigin();
    origins.push(o1, o2);
    const file = join(dir, 'override.yaml');
    await start(file, yaml([o1.url, o2.url]));
    proxy!.ctx.pools.get('default')!.setOverride('b0', 'drain');
    expect((await proxy!.config.reload()).ok).toBe(true);
    const state = () => proxy!.ctx.pools.get('default')!.snapshot().backends.map((b) => [b.name, b.override]);
    expect(state()).toEqual([['b0', 'drain'], ['b1', 'auto']]);
    // drained means no new requests
    o1.reset();
    for (let i = 0; i < 6; i++) await get(`/x${i}`);
    expect(o1.count()).toBe(0);
    expect((await proxy!.config.rollback()).ok).toBe(true);
    expect(state()).toEqual([['b0', 'drain'], ['b1', 'auto']]);
  });

  it('applies a changed `alerts` section: the new rule is evaluated and notifies the new webhook', async () => {
    const o = await startOrigin();
    origins.push(o);
    const hook = await startReceiver();
    receivers.push(hook);
    const file = join(dir, 'alerts.yaml');
    await start(file, withAdmin([o.url]));
    expect((await adminGet('/api/alerts')).body.rules).toEqual([]);
    writeFileSync(file, withAdmin([o.url], `alerts:\n  interval: 100ms\n  webhooks: [{ url: "${hook.url}" }]\n  rules: [{ name: drained, when: backend_unhealthy }]\n`));
    const r = await proxy!.config.reload();
    expect(r).toMatchObject({ ok: true, restart_required: [] });
    proxy!.ctx.pools.get('default')!.setOverride('b0', 'sick');
    for (let i = 0; i < 100 && hook.received.length === 0; i++) await new Promise((res) => setTimeout(res, 50));
    expect(hook.received.map((x) => [x.body.rule, x.body.state])).toEqual([['drained', 'firing']]);
    const view = (await adminGet('/api/alerts')).body as { firing: string[] };
    expect(view.firing).toEqual(['drained']);
  });

  it('applies a new admin.token at once; a changed admin.listen is reported as needing a restart', async () => {
    const o = await startOrigin();
    origins.push(o);
    const file = join(dir, 'token.yaml');
    const log = await start(file, withAdmin([o.url]));
    expect((await adminGet('/api/stats')).status).toBe(200); // loopback, no token: reads are open
    writeFileSync(file, withAdmin([o.url]).replace('admin: { listen: "127.0.0.1:0" }', `admin: { listen: "127.0.0.1:1", token: ${TOKEN} }`));
    // through the API, as an operator would (the token is not set yet: the write is refused, then allowed once set)
    const refused = await request(`${proxy!.plane.admin!.url}/api/reload`, { method: 'POST' });
    expect(refused.statusCode).toBe(403);
    await refused.body.dump();
    const r = await proxy!.config.reload();
    expect(r).toMatchObject({ ok: true, restart_required: ['admin.listen'] });
    expect((await adminGet('/api/stats')).status).toBe(401);
    expect((await adminGet('/api/stats', TOKEN)).status).toBe(200);
    const again = await request(`${proxy!.plane.admin!.url}/api/reload`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
    expect(again.statusCode).toBe(200);
    await again.body.dump();
    const warn = log.lines.find((l) => l.type === 'reload' && l.level === 'warn');
    expect(String(warn?.msg)).toMatch(/restart needed for admin\.listen: admin\.listen changed \(127\.0\.0\.1:0 → 127\.0\.0\.1:1\)/);
  });
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

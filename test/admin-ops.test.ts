// Issue 5 through the admin API and the CLI: purge kinds answer how many objects they hit, maintenance
// switches per pool, reload/rollback/config, and `lacquer purge` talking to a running admin plane.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startHarness, type Harness } from './helpers.ts';
import { NODE } from './spawn-node.ts';

const run = promisify(execFile);
const TOKEN = 'test-token-0123456789abcdef';
let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

async function api(method: string, path: string, body?: unknown, token: string | null = TOKEN) {
  const res = await request(`${h!.proxy.plane.admin!.url}${path}`, {
    method: method as 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> };
}

const cacheable = { kind: 'normal', cacheControl: 'max-age=60' } as const;

describe('admin API for operations', () => {
  it('purges by URL, prefix, regex, tag and everything, each answering the count; refuses bad input and missing tokens', async () => {
    h = await startHarness({
      origins: [{ behaviours: { '*': cacheable, '/t/1': { ...cacheable, headers: { 'surrogate-key': 'red' } }, '/t/2': { ...cacheable, headers: { 'surrogate-key': 'red blue' } } } }],
      config: { admin: { token: TOKEN } },
    });
    for (const p of ['/a', '/b/1', '/b/2', '/c.png', '/d.png', '/t/1', '/t/2', '/e']) await h.get(p);
    const host = new URL(h.url).host;
    expect((await api('POST', '/api/purge', { url: `http://${host}/a` })).body).toMatchObject({ purged: 1, kind: 'url' });
    expect((await api('POST', '/api/purge', { prefix: '/b/' })).body).toMatchObject({ purged: 2, kind: 'prefix' });
    expect((await api('POST', '/api/purge', { regex: '\\.png$' })).body).toMatchObject({ purged: 2, kind: 'regex' });
    expect((await api('POST', '/api/purge', { tags: ['red'], soft: true })).body).toMatchObject({ purged: 2, kind: 'tags', mode: 'soft' });
    expect((await h.get('/b/1')).headers['cache-status']).toMatch(/fwd=uri-miss/);
    expect((await h.get('/e')).headers['cache-status']).toMatch(/hit/);
    expect((await api('POST', '/api/purge', { regex: '(' })).status).toBe(400);
    expect((await api('POST', '/api/purge', { url: '/x', prefix: '/y' })).body.message).toMatch(/exactly one of/);
    expect((await api('POST', '/api/purge', { all: true }, null)).status).toBe(401);
    const all = await api('POST', '/api/purge', { all: true });
    // /b/1 (fetched again), /e, /t/1, /t/2 at least; banned objects the lurker has not swept yet count too
    expect(all.body.purged).toBeGreaterThanOrEqual(4);
    expect(h.proxy.ctx.store.stats().objects).toBe(0);
  });

  it('switches maintenance per pool and back', async () => {
    h = await startHarness({ config: { admin: { token: TOKEN } } });
    const until = new Date(Date.now() + 90_000).toISOString();
    expect((await api('PUT', '/api/maintenance', { mode: 'page', pool: 'default', until })).status).toBe(200);
    const r = await h.get('/x');
    expect(r.status).toBe(503);
    expect(Number(r.headers['retry-after'])).toBeGreaterThan(85);
    expect((await api('GET', '/api/maintenance')).body.pools).toMatchObject({ default: { mode: 'page', source: 'api' } });
    expect((await api('PUT', '/api/maintenance', { mode: 'page', pool: 'nope' })).status).toBe(404);
    expect((await api('PUT', '/api/maintenance', { mode: 'auto', pool: 'default' })).status).toBe(200);
    expect((await h.get('/x')).status).toBe(200);
  });

  it('shows the active config with secrets masked, and refuses reload without a file', async () => {
    h = await startHarness({ config: { admin: { token: TOKEN } } });
    const c = await api('GET', '/api/config');
    expect(c.status).toBe(200);
    expect(JSON.stringify(c.body)).not.toContain(TOKEN);
    expect((c.body.active as { admin: { token: string } }).admin.token).toBe('***');
    const r = await api('POST', '/api/reload');
    expect(r.status).toBe(422);
    expect(r.body.reason).toMatch(/no configuration file/);
    expect((await api('POST', '/api/rollback')).status).toBe(409);
  });

  it('`lacquer purge` purges through the admin API and prints the count', async () => {
    h = await startHarness({ origins: [{ behaviours: { '*': cacheable } }], config: { admin: { token: TOKEN } } });
    await h.get('/p/1');
    await h.get('/p/2');
    const admin = h.proxy.plane.admin!.url;
    const out = await run(NODE, ['src/cli/main.ts', 'purge', '--prefix', '/p/', '--admin', admin, '--token', TOKEN], { encoding: 'utf8' });
    expect(out.stdout).toMatch(/2 objects purged/);
    const denied = await run(NODE, ['src/cli/main.ts', 'purge', '--all', '--admin', admin, '--token', 'wrong-token-0123456789'], { encoding: 'utf8' }).catch((e: { code: number; stderr: string }) => e);
    expect('code' in denied && denied.code).toBe(1);
  });
});

// The admin plane's API and its auth rules, against a real proxy in front of real fake origins.
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { ConfigError, validateConfig } from '../src/config/load.ts';
import { adminAuth } from '../src/admin/auth.ts';
import { startHarness, type Harness } from './helpers.ts';
import { admin, until } from './admin-helpers.ts';
import { parseHead, rawExchange } from './raw-client.ts';
import type { IncomingMessage } from 'node:http';

const TOKEN = 'test-admin-token-0123456789';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

type Json = Record<string, unknown>;
type BackendRow = { pool: string; name: string; state: string; override: string; probe_window: string; inflight: number; queue_length: number; errors_by_class: Record<string, number> };
const backends = async (hh: Harness, token?: string) => ((await admin(hh, '/api/backends', { token })).json() as { pools: { name: string; backends: BackendRow[] }[] }).pools;

describe('admin auth', () => {
  it('on loopback without a token: reads are open, writes are refused, foreign Host names are refused', async () => {
    h = await startHarness();
    const health = await admin(h, '/healthz');
    expect(health.status).toBe(200);
    expect((health.json() as Json).status).toBe('ok');
    expect((await admin(h, '/api/stats')).status).toBe(200);
    const put = await admin(h, '/api/backends/default/app1/health', { method: 'PUT', body: 'drain' });
    expect(put.status).toBe(403);
    expect((put.json() as Json).message).toMatch(/admin\.token/);
    // DNS rebinding: a page on evil.example resolving to 127.0.0.1 must not read the open API.
    const rebound = await admin(h, '/api/stats', { headers: { host: 'evil.example:6082' } });
    expect(rebound.status).toBe(403);
  });

  it('with a token: /healthz and /readyz stay open (Kubernetes probes send no token) and reveal only the verdict', async () => {
    h = await startHarness({ config: { admin: { token: TOKEN } } });
    const health = await admin(h, '/healthz');
    expect(health.status).toBe(200);
    expect((health.json() as Json).status).toBe('ok');
    const ready = await admin(h, '/readyz');
    expect(ready.status).toBe(200);
    expect(ready.json()).toEqual({ ready: true });
    // with the token, the operator's detail
    expect((await admin(h, '/readyz', { token: TOKEN })).json()).toMatchObject({ ready: true, pools: [{ name: 'default' }] });
    expect((await admin(h, '/api/backends')).status).toBe(401);
  });

  it('with a token: every other endpoint needs the bearer token, compared exactly', async () => {
    h = await startHarness({ config: { admin: { token: TOKEN } } });
    for (const path of ['/api/backends', '/api/failures', '/api/stats', '/api/alerts', '/metrics', '/api/events']) {
      const r = await admin(h, path);
      expect(r.status, path).toBe(401);
      expect(r.headers['www-authenticate']).toMatch(/^Bearer/);
      expect((r.json() as Json).message).toMatch(/Authorization: Bearer/);
    }
    const wrong = await admin(h, '/api/stats', { token: `${TOKEN}x` });
    expect(wrong.status).toBe(401);
    expect((wrong.json() as Json).message).toMatch(/does not match/);
    expect((await admin(h, '/api/stats', { token: TOKEN.slice(0, -1) })).status).toBe(401);
    expect((await admin(h, '/api/stats', { token: TOKEN })).status).toBe(200);
    expect((await admin(h, '/metrics', { token: TOKEN })).status).toBe(200);
  });

  it('refuses a non-loopback admin address without a token, at config load and at start', () => {
    expect(() => validateConfig({ backends: [{ name: 'a', url: 'http://127.0.0.1:1' }], admin: { listen: '0.0.0.0:6082' } })).toThrow(ConfigError);
    try {
      validateConfig({ backends: [{ name: 'a', url: 'http://127.0.0.1:1' }], admin: { listen: '10.1.2.3:6082' } });
    } catch (e) {
      expect((e as ConfigError).problems[0]).toMatchObject({ path: 'admin.token' });
    }
    expect(() => validateConfig({ backends: [{ name: 'a', url: 'http://127.0.0.1:1' }], admin: { listen: '0.0.0.0:6082', token: TOKEN } })).not.toThrow();
    expect(() => validateConfig({ backends: [{ name: 'a', url: 'http://127.0.0.1:1' }], admin: { token: 'short' } })).toThrow(/16 characters/);
    // Bound to every interface without a token, even a read is refused.
    const req = { headers: { host: '127.0.0.1:6082' } } as IncomingMessage;
    expect(adminAuth('0.0.0.0', undefined).decide(req, false)).toMatchObject({ ok: false, status: 401 });
    expect(adminAuth('127.0.0.1', undefined).decide(req, false)).toEqual({ ok: true });
  });

  it('serves the dashboard shell without auth, with a CSP; its event stream needs the token', async () => {
    h = await startHarness({ config: { admin: { token: TOKEN } } });
    const page = await admin(h, '/');
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toMatch(/text\/html/);
    expect(page.headers['content-security-policy']).toMatch(/default-src 'self'/);
    const script = /src="\.(\/static\/[^"]+\.js)"/.exec(page.text)?.[1];
    expect(script).toBeTruthy();
    expect((await admin(h, script!)).status).toBe(200);
    expect((await admin(h, '/api/events')).status).toBe(401);
    const res = await request(`${h.proxy.plane.admin!.url}/api/events`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(res.headers['content-type']).toMatch(/text\/event-stream/);
    let text = '';
    for await (const chunk of res.body) {
      text += String(chunk);
      if (text.includes('\n\n')) break;
    }
    res.body.destroy();
    expect(text).toMatch(/^event: snapshot\ndata: \{/);
    const snap = JSON.parse(text.split('\n')[1]!.slice(6)) as Json;
    expect(snap).toHaveProperty('points');
    expect(snap).toHaveProperty('backends');
  });

  it('answers 404 for unknown paths and 405 with Allow for a wrong method', async () => {
    h = await startHarness();
    expect((await admin(h, '/nope')).status).toBe(404);
    const r = await admin(h, '/api/backends/default/app1/health');
    expect(r.status).toBe(405);
    expect(r.headers.allow).toBe('PUT');
    expect((await admin(h, '/api/stats', { method: 'POST' })).status).toBe(405);
    // `//` is a path, not an authority without a host: it was a 500 (and an error log line).
    const port = Number(new URL(h.proxy.plane.admin!.url).port);
    for (const target of ['//', '//api/stats', '//evil.example/x']) {
      const raw = await rawExchange(port, `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`);
      expect(parseHead(raw).status, target).toBe(404);
    }
    expect(h.log.lines.some((l) => l.msg === 'admin request failed')).toBe(false);
  });
});

describe('admin API', () => {
  it('lists backends with state, probe window, in-flight and queue, and overrides health with PUT', async () => {
    h = await startHarness({ origins: [{}, {}], config: { admin: { token: TOKEN } } });
    const pools = await backends(h, TOKEN);
    expect(pools.map((p) => p.name)).toContain('default');
    const def = pools.find((p) => p.name === 'default')!;
    expect(def.backends.map((b) => b.name)).toEqual(['app1', 'app2']);
    for (const b of def.backends) {
      expect(b.state).toBe('healthy');
      expect(b.override).toBe('auto');
      expect(typeof b.probe_window).toBe('string');
      expect(b.inflight).toBe(0);
      expect(b.queue_length).toBe(0);
    }
    const drain = await admin(h, '/api/backends/default/app2/health', { method: 'PUT', body: 'drain', token: TOKEN });
    expect(drain.status).toBe(200);
    expect(drain.json()).toMatchObject({ name: 'app2', override: 'drain', state: 'draining' });
    const after = (await backends(h, TOKEN)).find((p) => p.name === 'default')!.backends.find((b) => b.name === 'app2')!;
    expect(after).toMatchObject({ override: 'drain', state: 'draining' });
    // A drained backend takes no new requests.
    const before = h.origins[1]!.count();
    for (let i = 0; i < 6; i++) expect((await h.get(`/d${i}`)).status).toBe(200);
    expect(h.origins[1]!.count()).toBe(before);
    expect((await admin(h, '/api/backends/default/app2/health', { method: 'PUT', body: '{"health":"auto"}', token: TOKEN })).json()).toMatchObject({ override: 'auto', state: 'healthy' });
    const bad = await admin(h, '/api/backends/default/app2/health', { method: 'PUT', body: 'maybe', token: TOKEN });
    expect(bad.status).toBe(400);
    expect((bad.json() as Json).message).toMatch(/auto, healthy, sick, drain/);
    expect((await admin(h, '/api/backends/default/nope/health', { method: 'PUT', body: 'sick', token: TOKEN })).status).toBe(404);
    expect((await admin(h, '/api/backends/nopool/app1/health', { method: 'PUT', body: 'sick', token: TOKEN })).status).toBe(404);
  });

  it('/readyz says which pool has no healthy backend', async () => {
    h = await startHarness({ origins: [{}, {}], config: { admin: { token: TOKEN } } });
    const ok = await admin(h, '/readyz', { token: TOKEN });
    expect(ok.status).toBe(200);
    expect(ok.json()).toMatchObject({ ready: true, problems: [] });
    for (const b of ['app1', 'app2']) expect((await admin(h, `/api/backends/default/${b}/health`, { method: 'PUT', body: 'sick', token: TOKEN })).status).toBe(200);
    const down = await admin(h, '/readyz', { token: TOKEN });
    expect(down.status).toBe(503);
    const body = down.json() as { ready: boolean; problems: string[] };
    expect(body.ready).toBe(false);
    expect(body.problems[0]).toMatch(/pool default has no healthy backend \(0\/2: app1 sick, app2 sick\)/);
    expect((await admin(h, '/healthz', { token: TOKEN })).status).toBe(200);
  });

  it('/api/failures: newest first, limit, class and backend filters, and one report by request id', async () => {
    h = await startHarness({
      origins: [{ behaviours: { '/garbage': { kind: 'garbage' }, '/slow': { kind: 'hang' } } }, { behaviours: { '/garbage': { kind: 'garbage' }, '/slow': { kind: 'hang' } } }],
      config: { timeouts: { first_byte: '300ms' } },
    });
    const ids: string[] = [];
    for (const p of ['/garbage', '/garbage', '/slow']) {
      const r = await h.get(p);
      expect(r.status).toBe(503);
      ids.push(String(r.headers['x-request-id']));
    }
    await until(async () => ((await admin(h!, '/api/failures')).json() as { count: number }).count >= 3);
    const all = (await admin(h, '/api/failures')).json() as { count: number; failures: { id: string; class: string; backend: string; hint: string; attempts: unknown[]; trace: string }[] };
    expect(all.failures.map((f) => f.id)).toEqual([...ids].reverse());
    expect(all.failures[0]).toMatchObject({ class: 'http_response_timeout', phase: 'wait_headers' });
    expect(all.failures[0]!.hint).toMatch(/first_byte/);
    expect(all.failures[0]!.trace).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/);
    const one = (await admin(h, '/api/failures?limit=1')).json() as { failures: { id: string }[] };
    expect(one.failures.map((f) => f.id)).toEqual([ids[2]]);
    const protocol = (await admin(h, '/api/failures?class=http_protocol_error')).json() as { failures: { id: string; class: string; backend: string }[] };
    expect(protocol.failures.map((f) => f.id)).toEqual([ids[1], ids[0]]);
    const onApp = protocol.failures[0]!.backend;
    const filtered = (await admin(h, `/api/failures?class=http_protocol_error&backend=${onApp}`)).json() as { failures: { backend: string }[] };
    expect(filtered.failures.length).toBeGreaterThanOrEqual(1);
    expect(filtered.failures.every((f) => f.backend === onApp)).toBe(true);
    const single = await admin(h, `/api/failures/${ids[1]}`);
    expect(single.status).toBe(200);
    expect(single.json()).toMatchObject({ id: ids[1], class: 'http_protocol_error', served: 'synthetic-error' });
    expect((await admin(h, '/api/failures/no-such-id')).status).toBe(404);
    expect((await admin(h, '/api/failures?limit=0')).status).toBe(400);
    expect((await admin(h, '/api/failures?class=bogus')).status).toBe(400);
  });

  it('/api/stats counts requests by cache status, errors by class, origin requests, bytes and cache use', async () => {
    h = await startHarness({ origins: [{ behaviours: { '*': { kind: 'normal', cacheControl: 'max-age=60', bodySize: 2000 }, '/gone': { kind: 'reset-before-headers' } } }] });
    await h.get('/a');
    await h.get('/a');
    await h.get('/a');
    expect((await h.get('/gone')).status).toBe(503);
    await until(async () => ((await admin(h!, '/api/stats')).json() as { requests: { total: number } }).requests.total >= 4);
    const s = (await admin(h, '/api/stats')).json() as {
      requests: { total: number; by_cache_status: Record<string, number>; by_status_class: Record<string, number> };
      hit_ratio: number;
      errors_by_class: Record<string, number>;
      origin_requests: number;
      bytes_out: number;
      cache: { objects: number; bytes: number; max_bytes: number };
      process: { rss_bytes: number };
      rates_1m: { requests_per_s: number };
    };
    expect(s.requests.total).toBe(4);
    expect(s.requests.by_cache_status.hit).toBe(2);
    expect(s.requests.by_status_class['5xx']).toBe(1);
    expect(s.hit_ratio).toBeCloseTo(2 / 3, 3);
    expect(Object.keys(s.errors_by_class)).toEqual(['connection_terminated']);
    expect(s.origin_requests).toBeGreaterThanOrEqual(2);
    expect(s.bytes_out).toBeGreaterThanOrEqual(6000);
    expect(s.cache.objects).toBe(1);
    expect(s.cache.bytes).toBeGreaterThan(2000);
    expect(s.cache.max_bytes).toBe(256 * 1024 * 1024);
    expect(s.process.rss_bytes).toBeGreaterThan(0);
    expect(s.rates_1m.requests_per_s).toBeGreaterThan(0);
  });
});

describe('tracing', () => {
  it('continues an incoming trace to the origin with a new parent id and the tracestate, and logs it', async () => {
    h = await startHarness();
    const incoming = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const r = await h.get('/t1', { traceparent: incoming, tracestate: 'vendor=abc' });
    const seen = h.origins[0]!.requests.at(-1)!.headers;
    const tp = String(seen.traceparent);
    expect(tp).toMatch(/^00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-01$/);
    expect(tp).not.toBe(incoming);
    expect(seen.tracestate).toBe('vendor=abc');
    const line = await h.log.forRequest(String(r.headers['x-request-id']));
    expect(line.trace).toBe(tp);
  });

  it('starts a trace when none (or an invalid one) arrives, and drops tracestate with it', async () => {
    h = await startHarness();
    await h.get('/t2');
    const fresh = String(h.origins[0]!.requests.at(-1)!.headers.traceparent);
    expect(fresh).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    await h.get('/t3', { traceparent: '00-00000000000000000000000000000000-00f067aa0ba902b7-01', tracestate: 'vendor=abc' });
    const h3 = h.origins[0]!.requests.at(-1)!.headers;
    expect(String(h3.traceparent)).not.toMatch(/^00-0{32}/);
    expect(h3.tracestate).toBeUndefined();
    // A cache hit makes no origin request but is still logged with its own trace id.
    h.origins[0]!.set('/cached', { kind: 'normal', cacheControl: 'max-age=60' });
    await h.get('/cached');
    const hit = await h.get('/cached');
    const line = await h.log.forRequest(String(hit.headers['x-request-id']));
    expect(line.trace).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
  });
});

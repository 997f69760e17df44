// Fleet mode on a real redis-server (issue 13): shared store, fleet-wide coalescing with takeover,
// invalidation broadcast with catch-up, and Redis never a new way to fail.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { createClient } from 'redis';
import { validateConfig } from '../src/config/load.ts';
import { startProxy, type Proxy } from '../src/main.ts';
import { startOrigin, type Origin } from '../src/lab/origin.ts';
import { startRedisSentinel, startRedisServer, type RedisServer } from '../src/lab/redis-server.ts';
import { LogCapture, sleep } from './helpers.ts';
import { checkFleet } from '../src/doctor/fleet.ts';

type Instance = { proxy: Proxy; log: LogCapture; get(path: string, headers?: Record<string, string>): Promise<{ status: number; headers: Record<string, unknown>; body: string }>; admin(path: string, body: unknown): Promise<{ status: number; body: string }> };

const HOST = 'shop.test';
const TOKEN = 'fleet-test-token';
let redis: RedisServer;
let origin: Origin;
let name = 0;
const running: Instance[] = [];
const agent = new Agent({ keepAliveTimeout: 1000 });

beforeAll(async () => {
  redis = await startRedisServer();
  origin = await startOrigin({});
});

afterAll(async () => {
  await agent.close();
  await origin.close();
  await redis.close();
});

afterEach(async () => {
  await Promise.all(running.splice(0).map((i) => i.proxy.stop()));
  origin.reset();
  if (!(await redisUp())) await redis.start();
});

async function redisUp(): Promise<boolean> {
  const c = createClient({ url: redis.url, socket: { reconnectStrategy: false, connectTimeout: 500 } });
  c.on('error', () => undefined);
  try {
    await c.connect();
    await c.close();
    return true;
  } catch {
    return false;
  }
}

/** Starts `n` instances of one fleet (a fresh namespace per test, so tests share nothing). */
async function fleet(n: number, extra: Record<string, unknown> = {}): Promise<Instance[]> {
  const ns = `t${process.pid}-${++name}`;
  const out: Instance[] = [];
  for (let i = 0; i < n; i++) out.push(await instance(ns, extra));
  return out;
}

async function instance(ns: string, extra: Record<string, unknown> = {}, redisUrl = redis.url): Promise<Instance> {
  const config = validateConfig({
    listen: '127.0.0.1:0',
    admin: { listen: '127.0.0.1:0', token: TOKEN },
    backends: [{ name: 'app', url: origin.url }],
    // 200ms: generous for a loaded CI machine; the default is 50ms.
    fleet: { redis: redisUrl, name: ns, store: { timeout: '200ms' } },
    ...extra,
  });
  const log = new LogCapture();
  const proxy = await startProxy(config, { logDestination: log });
  const inst: Instance = {
    proxy,
    log,
    async get(path, headers = {}) {
      // One site name for the whole fleet, as behind a load balancer (the cache key includes the Host).
      const res = await request(`${proxy.url}${path}`, { headers: { host: HOST, ...headers }, dispatcher: agent });
      return { status: res.statusCode, headers: res.headers, body: await res.body.text() };
    },
    async admin(path, body) {
      const res = await request(`${proxy.plane.admin!.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` }, body: JSON.stringify(body), dispatcher: agent });
      return { status: res.statusCode, body: await res.body.text() };
    },
  };
  running.push(inst);
  await waitFor(() => proxy.ctx.coord.status().state === 'up', 3000);
  return inst;
}

async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await sleep(10);
  }
  return cond();
}

/** Polls until the shared write of `path` has landed (writes are off the request path). */
async function landed(path: string): Promise<void> {
  const c = createClient({ url: redis.url });
  await c.connect();
  try {
    for (let i = 0; i < 200; i++) {
      const keys = await c.keys(`lq:*:o:${HOST}${path}*`);
      if (keys.length > 0) return;
      await sleep(10);
    }
    throw new Error(`${path} never reached Redis`);
  } finally {
    await c.close();
  }
}

describe('fleet: shared store', () => {
  it('A stores, B hits from Redis without going to the origin', async () => {
    origin.set('/shared', { kind: 'normal', cacheControl: 'max-age=60', body: 'one copy' });
    const [a, b] = await fleet(2);
    const first = await a!.get('/shared');
    expect(first.headers['cache-status']).toMatch(/fwd=uri-miss.*stored/);
    await landed('/shared');
    const second = await b!.get('/shared');
    expect(second.body).toBe('one copy');
    expect(second.headers['cache-status']).toMatch(/hit.*detail="fleet"/);
    expect(origin.count('/shared')).toBe(1);
    // B adopted it: the next request is a plain local hit.
    expect((await b!.get('/shared')).headers['cache-status']).toMatch(/^lacquer; hit; ttl=\d+$/);
  });

  it('Vary variants are shared per variant', async () => {
    origin.set('/vary', { kind: 'normal', cacheControl: 'max-age=60', headers: { vary: 'accept-language' }, body: 'v' });
    const [a, b] = await fleet(2);
    await a!.get('/vary', { 'accept-language': 'fr' });
    await landed('/vary');
    expect((await b!.get('/vary', { 'accept-language': 'fr' })).headers['cache-status']).toMatch(/detail="fleet"/);
    expect((await b!.get('/vary', { 'accept-language': 'de' })).headers['cache-status']).toMatch(/fwd=/);
    expect(origin.count('/vary')).toBe(2);
  });

  it('a stale copy in Redis hides an origin outage from an instance that never saw the origin', async () => {
    origin.set('/sie', { kind: 'normal', cacheControl: 'max-age=1, stale-if-error=300', body: 'old but good' });
    const [a] = await fleet(1);
    const ns = a!.proxy.ctx.config.fleet!.name;
    await a!.get('/sie');
    await landed('/sie');
    await sleep(1100);
    origin.set('/sie', { kind: 'error', status: 503 });
    const b = await instance(ns);
    const r = await b.get('/sie');
    expect(r.status).toBe(200);
    expect(r.body).toBe('old but good');
    expect(r.headers['cache-status']).toMatch(/fwd=stale/);
  });
});

describe('fleet: through Sentinel', () => {
  it('redis+sentinel:// finds the master through Sentinel: A stores, B hits, a purge reaches B', async () => {
    const sentinel = await startRedisSentinel(redis);
    try {
      origin.set('/sentinel', { kind: 'normal', cacheControl: 'max-age=60', body: 'via sentinel' });
      const ns = `t${process.pid}-${++name}`;
      const [a, b] = [await instance(ns, {}, sentinel.url('mymaster')), await instance(ns, {}, sentinel.url('mymaster'))];
      expect(a.proxy.ctx.coord.status().state).toBe('up');
      await a.get('/sentinel');
      await landed('/sentinel');
      expect((await b.get('/sentinel')).headers['cache-status']).toMatch(/detail="fleet"/);
      expect(origin.count('/sentinel')).toBe(1);
      await a.admin('/api/purge', { url: `${HOST}/sentinel` });
      expect(await waitFor(() => b.proxy.ctx.store.peek(`${HOST}/sentinel`) === undefined, 2000)).toBe(true);
      // lacquer doctor goes the same way.
      const d = await checkFleet(validateConfig({ backends: [{ name: 'a', url: 'http://127.0.0.1:1' }], fleet: { redis: sentinel.url('mymaster'), store: { timeout: '2s' } } }).fleet!);
      expect(d.findings.find((f) => f.check === 'connect')?.severity).toBe('ok');
    } finally {
      await Promise.all(running.splice(0).map((i) => i.proxy.stop()));
      await sentinel.close();
    }
  });
});

describe('fleet: coalescing', () => {
  it('concurrent misses on three instances make one origin request', async () => {
    origin.set('/herd', { kind: 'normal', cacheControl: 'max-age=60', body: 'herd', delayMs: 300 });
    const insts = await fleet(3);
    const replies = await Promise.all(Array.from({ length: 30 }, (_, i) => insts[i % 3]!.get('/herd')));
    expect(replies.every((r) => r.status === 200 && r.body === 'herd')).toBe(true);
    expect(origin.count('/herd')).toBe(1);
  });

  it('stale-while-revalidate: one instance refreshes for the fleet, the others adopt its copy', async () => {
    origin.set('/swr', { kind: 'normal', cacheControl: 'max-age=2, stale-while-revalidate=30', body: 'swr', delayMs: 200 });
    const [a, b] = await fleet(2);
    await a!.get('/swr');
    await landed('/swr');
    expect((await b!.get('/swr')).headers['cache-status']).toMatch(/detail="fleet"/);
    await sleep(2100); // past max-age on both (the origin's Date has whole seconds: born up to 1 s old)
    const [ra, rb] = await Promise.all([a!.get('/swr'), b!.get('/swr')]);
    expect(ra.headers['cache-status']).toMatch(/stale-while-revalidate/);
    expect(rb.headers['cache-status']).toMatch(/stale-while-revalidate/);
    await waitFor(() => a!.proxy.ctx.background === 0 && b!.proxy.ctx.background === 0, 3000);
    expect(origin.count('/swr')).toBe(2);
    // Both have the refreshed copy now.
    expect((await a!.get('/swr')).headers['cache-status']).toMatch(/^lacquer; hit/);
    expect((await b!.get('/swr')).headers['cache-status']).toMatch(/^lacquer; hit/);
  });

  it('a lock whose owner died expires and one waiter takes over', async () => {
    origin.set('/orphan', { kind: 'normal', cacheControl: 'max-age=60', body: 'taken over' });
    const [a, b] = await fleet(2, { timeouts: { first_byte: '1s' } });
    const ns = a!.proxy.ctx.config.fleet!.name;
    // A dead instance's lock: nobody will release it, it expires in 1.5 s.
    const c = createClient({ url: redis.url });
    await c.connect();
    await c.sendCommand(['SET', `lq:${ns}:l:${HOST}/orphan`, 'dead-instance', 'PX', '1500']);
    await c.close();
    const t0 = Date.now();
    const [ra, rb] = await Promise.all([a!.get('/orphan'), b!.get('/orphan')]);
    expect(ra.body).toBe('taken over');
    expect(rb.body).toBe('taken over');
    // They waited for the expiry (not the 65 s coalesce_wait), then one fetched for both.
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1400);
    expect(origin.count('/orphan')).toBe(1);
  });
});

describe('fleet: invalidation broadcast', () => {
  async function cachedOnBoth(path: string, a: Instance, b: Instance, headers: Record<string, string> = {}) {
    await a.get(path, headers);
    await landed(path);
    await b.get(path, headers);
    expect((await b.get(path, headers)).headers['cache-status']).toMatch(/^lacquer; hit/);
  }

  it('purge on A reaches B and the shared store', async () => {
    origin.set('/p', { kind: 'normal', cacheControl: 'max-age=60', body: 'p' });
    const [a, b] = await fleet(2);
    await cachedOnBoth('/p', a!, b!);
    const before = origin.count('/p');
    expect((await a!.admin('/api/purge', { url: `${HOST}/p` })).status).toBe(200);
    const t0 = Date.now();
    const gone = await waitFor(() => b!.proxy.ctx.store.stats().objects === 0, 1000);
    expect(gone).toBe(true);
    expect(Date.now() - t0).toBeLessThan(1000);
    const r = await b!.get('/p');
    expect(r.headers['cache-status']).toMatch(/fwd=uri-miss/);
    expect(origin.count('/p')).toBe(before + 1);
  });

  it('ban and tag purge on A reach B', async () => {
    origin.set('/b/1', { kind: 'normal', cacheControl: 'max-age=60', body: 'b1' });
    origin.set('/t/1', { kind: 'normal', cacheControl: 'max-age=60', headers: { 'surrogate-key': 'red' }, body: 't1' });
    const [a, b] = await fleet(2);
    await cachedOnBoth('/b/1', a!, b!);
    await cachedOnBoth('/t/1', a!, b!);
    await a!.admin('/api/purge', { prefix: '/b/' });
    await a!.admin('/api/purge', { tags: ['red'] });
    await sleep(200);
    expect((await b!.get('/b/1')).headers['cache-status']).toMatch(/fwd=/);
    expect((await b!.get('/t/1')).headers['cache-status']).toMatch(/fwd=/);
  });

  it('soft purge on A makes B revalidate', async () => {
    origin.set('/soft', { kind: 'normal', cacheControl: 'max-age=60', etag: '"v1"', body: 'soft' });
    const [a, b] = await fleet(2);
    await cachedOnBoth('/soft', a!, b!);
    await a!.admin('/api/purge', { url: `${HOST}/soft`, soft: true });
    await sleep(200);
    expect((await b!.get('/soft')).headers['cache-status']).toMatch(/fwd=stale/);
  });

  it('an instance that missed an invalidation replays it from the log (sequence gap)', async () => {
    origin.set('/gap', { kind: 'normal', cacheControl: 'max-age=60', body: 'gap' });
    const [a, b] = await fleet(2);
    const ns = a!.proxy.ctx.config.fleet!.name;
    await cachedOnBoth('/gap', a!, b!);
    // An invalidation B never heard of: in the log with the next sequence number, but never published.
    const c = createClient({ url: redis.url });
    await c.connect();
    const seq = await c.incr(`lq:${ns}:seq`);
    await c.lPush(`lq:${ns}:log`, JSON.stringify({ s: seq, f: 'gone-instance', m: { kind: 'invalidate', inv: { op: 'purge', primary: `${HOST}/gap`, mode: 'hard' } } }));
    await c.close();
    expect(b!.proxy.ctx.store.peek(`${HOST}/gap`)).toBeDefined();
    // The next broadcast shows B the gap; B reads the log and applies what it missed.
    await a!.admin('/api/purge', { url: `${HOST}/other` });
    expect(await waitFor(() => b!.proxy.ctx.store.peek(`${HOST}/gap`) === undefined, 2000)).toBe(true);
    expect(b!.log.lines.some((l) => String(l.msg).includes('local cache dropped'))).toBe(false);
  });

  it('a purge made while Redis hangs is sent when it answers again', async () => {
    origin.set('/later', { kind: 'normal', cacheControl: 'max-age=60', body: 'later' });
    const [a, b] = await fleet(2);
    await cachedOnBoth('/later', a!, b!);
    redis.pause();
    try {
      // Applied locally at once; the broadcast waits for Redis (queued after a timeout).
      expect((await a!.admin('/api/purge', { url: `${HOST}/later` })).status).toBe(200);
      expect(a!.proxy.ctx.store.peek(`${HOST}/later`)).toBeUndefined();
      expect(b!.proxy.ctx.store.peek(`${HOST}/later`)).toBeDefined();
    } finally {
      redis.resume();
    }
    await sleep(1100); // past the pause after a timeout
    await a!.get('/other-later'); // any call that succeeds shows A that Redis is back
    expect(await waitFor(() => b!.proxy.ctx.store.peek(`${HOST}/later`) === undefined, 5000)).toBe(true);
  });

  it('an instance that missed invalidations while Redis lost its data drops its local cache', async () => {
    origin.set('/reset', { kind: 'normal', cacheControl: 'max-age=60', body: 'r' });
    const [a, b] = await fleet(2);
    await cachedOnBoth('/reset', a!, b!);
    await a!.admin('/api/purge', { url: `${HOST}/nothing` }); // seq 1
    await sleep(100);
    await redis.stop(true);
    await redis.start(); // empty: the sequence went back to 0
    const dropped = await waitFor(() => b!.log.lines.some((l) => String(l.msg).includes('local cache dropped')), 8000);
    expect(dropped).toBe(true);
    expect(b!.proxy.ctx.store.stats().objects).toBe(0);
  });
});

describe('fleet: Redis is never a new way to fail', () => {
  it('Redis killed mid-load: zero client errors; back: sharing resumes', async () => {
    origin.set('*', { kind: 'normal', cacheControl: 'max-age=1', body: 'load' });
    const insts = await fleet(3);
    let errors = 0;
    let done = 0;
    const end = Date.now() + 4000;
    const loop = async (i: number) => {
      let n = 0;
      while (Date.now() < end && n++ < 5000) {
        const r = await insts[i % 3]!.get(`/load/${n % 5}`).catch(() => ({ status: 0 }));
        if (r.status !== 200) errors++;
        done++;
      }
    };
    const load = Promise.all([0, 1, 2, 3, 4, 5].map(loop));
    await sleep(1000);
    await redis.stop(true);
    await sleep(1500);
    await redis.start();
    await load;
    expect(done).toBeGreaterThan(50);
    expect(errors).toBe(0);
    expect(insts[0]!.proxy.ctx.coord.status().errors).not.toEqual({});
    // Sharing resumes: a fresh object stored by one is a fleet hit on another.
    expect(await waitFor(() => insts.every((x) => x.proxy.ctx.coord.status().state === 'up'), 5000)).toBe(true);
    origin.set('/after', { kind: 'normal', cacheControl: 'max-age=60', body: 'after' });
    await insts[0]!.get('/after');
    await landed('/after');
    expect((await insts[1]!.get('/after')).headers['cache-status']).toMatch(/detail="fleet"/);
  });

  it('a hung Redis (SIGSTOP) costs a miss at most fleet.store.timeout, never an error', async () => {
    origin.set('/hung', { kind: 'normal', cacheControl: 'max-age=60', body: 'h' });
    const [a] = await fleet(1);
    redis.pause();
    try {
      const r = await a!.get('/hung');
      expect(r.status).toBe(200);
      expect(origin.count('/hung')).toBe(1);
      expect(a!.proxy.ctx.coord.status().errors['lookup']).toBeGreaterThan(0);
    } finally {
      redis.resume();
    }
    const m = await request(`${a!.proxy.plane.admin!.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` }, dispatcher: agent });
    const text = await m.body.text();
    expect(text).toMatch(/lacquer_fleet_errors_total\{op="lookup"\} [1-9]/);
    const stats = await request(`${a!.proxy.plane.admin!.url}/api/stats`, { headers: { authorization: `Bearer ${TOKEN}` }, dispatcher: agent });
    expect(((await stats.body.json()) as { fleet: { errors: Record<string, number> } }).fleet.errors['lookup']).toBeGreaterThan(0);
  });

  it('a full Redis (noeviction, over maxmemory) refuses writes: requests are served, errors counted', async () => {
    origin.set('/full', { kind: 'normal', cacheControl: 'max-age=60', body: 'full' });
    const [a, b] = await fleet(2);
    const c = createClient({ url: redis.url });
    await c.connect();
    await c.configSet({ maxmemory: '1', 'maxmemory-policy': 'noeviction' });
    try {
      const [ra, rb] = await Promise.all([a!.get('/full'), b!.get('/full')]);
      expect([ra.status, rb.status]).toEqual([200, 200]);
      await waitFor(() => (a!.proxy.ctx.coord.status().errors['put'] ?? 0) > 0, 2000);
      const errs = a!.proxy.ctx.coord.status().errors;
      expect(errs['lock']).toBeGreaterThan(0);
      expect(errs['put']).toBeGreaterThan(0);
    } finally {
      await c.configSet({ maxmemory: '0' });
      await c.close();
    }
  });

  it('starts and serves while Redis is down', async () => {
    await redis.stop(true);
    origin.set('/alone', { kind: 'normal', cacheControl: 'max-age=60', body: 'alone' });
    const ns = `t${process.pid}-${++name}`;
    const config = validateConfig({ listen: '127.0.0.1:0', admin: { listen: '127.0.0.1:0' }, backends: [{ name: 'app', url: origin.url }], fleet: { redis: redis.url, name: ns } });
    const log = new LogCapture();
    const proxy = await startProxy(config, { logDestination: log });
    try {
      const r1 = await request(`${proxy.url}/alone`, { headers: { host: HOST }, dispatcher: agent });
      expect(r1.statusCode).toBe(200);
      await r1.body.text();
      const r2 = await request(`${proxy.url}/alone`, { headers: { host: HOST }, dispatcher: agent });
      expect(r2.headers['cache-status']).toMatch(/hit/);
      await r2.body.text();
      expect(proxy.ctx.coord.status().state).toBe('down');
      expect(log.lines.filter((l) => l.type === 'fleet').length).toBeGreaterThan(0);
    } finally {
      await proxy.stop();
    }
  });
});

describe('lacquer doctor: the fleet Redis', () => {
  // A generous timeout: PING on a loaded CI machine must still count as well within it.
  const cfg = (url: string) => validateConfig({ backends: [{ name: 'a', url: 'http://127.0.0.1:1' }], fleet: { redis: url, store: { timeout: '2s' } } }).fleet!;

  it('names connect failures, wrong passwords, latency and a memory policy that would evict locks', async () => {
    const down = await checkFleet(cfg('redis://127.0.0.1:1'));
    expect(down.findings.find((f) => f.check === 'connect')?.severity).toBe('fail');

    const c = createClient({ url: redis.url });
    await c.connect();
    try {
      const ok = await checkFleet(cfg(redis.url));
      expect(ok.findings.find((f) => f.check === 'latency')?.severity).toBe('ok');
      expect(ok.findings.find((f) => f.check === 'memory')?.message).toMatch(/maxmemory is 0/);

      await c.configSet({ maxmemory: '100mb', 'maxmemory-policy': 'allkeys-lru' });
      const lru = await checkFleet(cfg(redis.url));
      expect(lru.findings.find((f) => f.check === 'memory')).toMatchObject({ severity: 'warn', message: expect.stringMatching(/evict fetch locks/) });
      await c.configSet({ 'maxmemory-policy': 'volatile-ttl' });
      expect((await checkFleet(cfg(redis.url))).findings.find((f) => f.check === 'memory')?.severity).toBe('ok');

      await c.configSet({ requirepass: 'sekret' });
      const auth = await checkFleet(cfg(redis.url));
      expect(auth.findings.find((f) => f.check === 'auth')?.severity).toBe('fail');
      const withPass = await checkFleet(cfg(redis.url.replace('//', '//:sekret@')));
      expect(withPass.severity).not.toBe('fail');
      expect(withPass.redis).toContain(':***@');
      await c.sendCommand(['AUTH', 'sekret']).catch(() => undefined);
    } finally {
      await c.configSet({ requirepass: '', maxmemory: '0', 'maxmemory-policy': 'noeviction' }).catch(() => undefined);
      await c.close();
    }
  });
});

describe('fleet configuration', () => {
  it('names the path, the value and what is valid', () => {
    expect(() => validateConfig({ backends: [{ name: 'a', url: 'http://127.0.0.1:1' }], fleet: { redis: 'http://x:6379' } })).toThrow(/fleet\.redis: "http:\/\/x:6379" — a Redis URL/);
    expect(() => validateConfig({ backends: [{ name: 'a', url: 'http://127.0.0.1:1' }], fleet: { redis: 'redis://x', name: 'a b' } })).toThrow(/fleet\.name/);
    const c = validateConfig({ backends: [{ name: 'a', url: 'http://127.0.0.1:1' }], fleet: { redis: 'rediss://x:6380' } });
    expect(c.fleet).toEqual({ redis: 'rediss://x:6380', name: 'lacquer', store: { max_object_size: 1024 * 1024, timeout: 50 } });
    expect(validateConfig({ backends: [{ name: 'a', url: 'http://127.0.0.1:1' }] }).fleet).toBeUndefined();
  });
});

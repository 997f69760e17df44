// `workers: N` (issue 12): a real `lacquer serve --workers 2` (a primary and two workers on one port,
// connections spread round-robin). What one process does must hold across workers: one origin request for
// concurrent misses, a purge reaching every worker before the admin API answers, a crashed worker replaced
// while the other keeps serving. Every request goes on a new connection, so both workers take requests.
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, onTestFinished } from 'vitest';
import { startOrigin, type Origin } from '../src/lab/origin.ts';
import { rawRequest } from './raw-client.ts';
import { lacquer, waitFor, type Spawned } from './spawn-node.ts';

const dir = mkdtempSync(join(tmpdir(), 'lacquer-workers-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const TOKEN = 'workers-test-token-0123456789';

let origin: Origin | undefined;
let proc: Spawned | undefined;
afterEach(async () => {
  // SIGTERM drains the workers; SIGKILL only if the primary is still there after that.
  if (proc && proc.child.exitCode === null && proc.child.signalCode === null) {
    proc.child.kill('SIGTERM');
    const t = setTimeout(() => proc?.child.kill('SIGKILL'), 8000);
    await proc.exited;
    clearTimeout(t);
  }
  proc = undefined;
  await origin?.close();
  origin = undefined;
});

type Started = { port: number; admin: string; pids: number[]; balance: string };

/** A port free right now (workers_balance: reuseport needs a fixed one: with port 0 every worker would bind its own). */
function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

async function serveWorkers(behaviours: NonNullable<Parameters<typeof startOrigin>[0]>['behaviours'], o: { fixedPort?: boolean; yaml?: string } = {}): Promise<Started> {
  origin = await startOrigin({ behaviours });
  const cfg = join(dir, 'workers.yaml');
  writeFileSync(cfg, `listen: 127.0.0.1:${o.fixedPort ? await freePort() : 0}\nadmin:\n  listen: 127.0.0.1:0\n  token: ${TOKEN}\nproxy:\n  drain_timeout: 2s\nlog:\n  access: stdout\nbackends:\n  - name: app1\n    url: ${origin.url}\n${o.yaml ?? ''}`);
  proc = lacquer(['serve', '-c', cfg, '--workers', '2'], { timeoutMs: 40_000 });
  await waitFor(() => proc!.stderr().includes('with 2 workers'), 15_000, () => `stdout ${proc!.stdout()} stderr ${proc!.stderr()}`);
  const line = JSON.parse(proc.stderr().split('\n').find((l) => l.includes('with 2 workers'))!) as { listen: string; admin: string; pids: number[]; balance: string };
  return { port: Number(line.listen.split(':')[1]), admin: line.admin, pids: line.pids, balance: line.balance };
}

const get = (port: number, path: string) => rawRequest(`http://127.0.0.1:${port}${path}`, { timeoutMs: 10_000 });
const api = async <T>(admin: string, path: string): Promise<T> => (await (await fetch(`${admin}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as T;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `read` until `ok` holds (bounded: the admin worker gathers the others' figures once a second); returns the last value. */
async function until<T>(read: () => Promise<T>, ok: (v: T) => boolean, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  let v = await read();
  while (!ok(v) && Date.now() < end) {
    await sleep(150);
    v = await read();
  }
  return v;
}

/** The process (among `pids`) that holds the proxy's end of the connection whose client port is `clientPort` (Linux /proc). */
function ownerOf(proxyPort: number, clientPort: number, pids: number[]): number | undefined {
  const hex = (p: number) => p.toString(16).toUpperCase().padStart(4, '0');
  const row = readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1).map((l) => l.trim().split(/\s+/)).find((f) => f.length > 9 && f[1]!.endsWith(`:${hex(proxyPort)}`) && f[2]!.endsWith(`:${hex(clientPort)}`));
  if (!row) return undefined;
  for (const pid of pids) {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        if (readlinkSync(`/proc/${pid}/fd/${fd}`) === `socket:[${row[9]}]`) return pid;
      } catch {
        // closed meanwhile
      }
    }
  }
  return undefined;
}

/**
 * A keep-alive connection served by worker `index`: connections are opened (cluster round-robin spreads
 * them) until one is held by that worker's process. `get` sends requests on it.
 */
async function connectionOn(port: number, pids: number[], index: number) {
  for (let attempt = 0; attempt < 12; attempt++) {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const send = (path: string) =>
      new Promise<{ status: number; body: string; socket: net.Socket }>((resolve, reject) => {
        const req = http.get({ host: '127.0.0.1', port, path, agent }, (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode!, body, socket: req.socket! }));
        });
        req.on('error', reject);
      });
    const first = await send('/whoami');
    let owner: number | undefined;
    for (let i = 0; i < 20 && owner === undefined; i++) {
      owner = ownerOf(port, first.socket.localPort!, pids);
      if (owner === undefined) await sleep(50);
    }
    if (owner === pids[index]) return { send, close: () => agent.destroy() };
    agent.destroy();
  }
  throw new Error(`no connection landed on worker ${index}`);
}

describe('workers: 2', () => {
  it('coalesces concurrent misses across workers into one origin request (SO_REUSEPORT: the kernel spreads connections)', async () => {
    const { port, balance } = await serveWorkers({ '/slow': { kind: 'slow', firstByteMs: 600, then: { cacheControl: 'max-age=60', body: 'once\n' } } }, { fixedPort: true });
    expect(balance).toBe(process.platform === 'linux' ? 'reuseport' : 'cluster');
    const replies = await Promise.all(Array.from({ length: 12 }, () => get(port, '/slow')));
    expect(replies.map((r) => `${r.status} ${r.body.toString()}`)).toEqual(Array(12).fill('200 once\n'));
    // Without the primary's lock each worker would have fetched its own copy: two origin requests.
    expect(origin!.count('/slow')).toBe(1);
    // The second worker got the object from the hand-off store, not from the origin.
    const later = await Promise.all(Array.from({ length: 6 }, () => get(port, '/slow')));
    expect(later.every((r) => /; hit/.test(String(r.headers['cache-status'])))).toBe(true);
    expect(origin!.count('/slow')).toBe(1);
  }, 40_000);

  it('a second instance on a port the first holds with SO_REUSEPORT fails to start, as a single process would (no silent sharing)', async () => {
    const { port, balance } = await serveWorkers({ '/x': { kind: 'normal', cacheControl: 'max-age=60', body: 'x\n' } }, { fixedPort: true });
    expect(balance).toBe(process.platform === 'linux' ? 'reuseport' : 'cluster');
    const second = await lacquer(['serve', '-c', join(dir, 'workers.yaml'), '--workers', '2'], { timeoutMs: 20_000 }).exited;
    expect(second.code).toBe(1);
    expect(second.stderr.trim().split('\n')).toEqual([expect.stringMatching(new RegExp(`cannot start: listen: 127\\.0\\.0\\.1:${port} \\(EADDRINUSE\\)`))]);
    // The first one still answers every request.
    expect((await get(port, '/x')).status).toBe(200);
  }, 40_000);

  it('a purge (and maintenance) through the admin API reaches every worker before it answers; /metrics counts all workers', async () => {
    const { port, admin } = await serveWorkers({ '/v': { kind: 'normal', cacheControl: 'max-age=600', body: 'v1\n' } });
    // Both workers hold v1 (connections alternate between them): every answer after the first is a hit.
    const before = [];
    for (let i = 0; i < 8; i++) before.push(await get(port, '/v'));
    expect(before.map((r) => r.body.toString())).toEqual(Array(8).fill('v1\n'));
    expect(origin!.count('/v')).toBe(1);
    origin!.set('/v', { kind: 'normal', cacheControl: 'max-age=600', body: 'v2\n' });
    const purge = await fetch(`${admin}/api/purge`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ url: `http://127.0.0.1:${port}/v` }) });
    expect(purge.status).toBe(200);
    // No worker may answer the purged v1 once the API said the purge is done.
    const after = [];
    for (let i = 0; i < 8; i++) after.push(await get(port, '/v'));
    expect(after.map((r) => r.body.toString())).toEqual(Array(8).fill('v2\n'));
    expect(origin!.count('/v')).toBe(2);
    // /metrics (served by one worker) counts the requests of both.
    // (Each request is counted when its response has closed: read again until the last one is in, bounded.)
    let total = 0;
    for (let i = 0; i < 50 && total < 16; i++) {
      const text = await (await fetch(`${admin}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();
      total = [...text.matchAll(/^lacquer_requests_total\{[^}]*\} (\d+)$/gm)].reduce((a, m) => a + Number(m[1]), 0);
      if (total < 16) await new Promise((r) => setTimeout(r, 100));
    }
    expect(total).toBe(16);
    // Maintenance switched on through the admin API holds on every worker once the API answered.
    const m = await fetch(`${admin}/api/maintenance`, { method: 'PUT', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ mode: 'page' }) });
    expect(m.status).toBe(200);
    const paged = [];
    for (let i = 0; i < 6; i++) paged.push(await get(port, '/v'));
    expect(paged.map((r) => r.status)).toEqual(Array(6).fill(503));
  }, 40_000);

  it('a reload of the unchanged file asks for no restart: each worker shapes the file like at start (its share of cache.memory)', async () => {
    const { admin } = await serveWorkers({ '/r': { kind: 'normal', cacheControl: 'max-age=600', body: 'r\n' } });
    const r = await fetch(`${admin}/api/reload`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
    const body = (await r.json()) as { ok: boolean; restart_required: string[]; warnings: string[] };
    // It said `cache.memory changed (… → …): needs a restart` on every reload: the file's whole memory against a worker's share.
    expect(body).toMatchObject({ ok: true, restart_required: [], warnings: [] });
    expect(proc!.stderr()).not.toMatch(/restart needed|refused/);
  }, 40_000);

  it('runs the active health probes once per instance, not once per worker', async () => {
    await serveWorkers({ '/health': { kind: 'normal', cacheControl: 'no-store', body: 'ok\n' } }, { yaml: 'probes:\n  enabled: true\n  path: /health\n  interval: 200ms\n' });
    const from = origin!.count('/health');
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, 2000));
    const n = origin!.count('/health') - from;
    const intervals = (performance.now() - t0) / 200;
    // One prober sends about one probe per interval (fewer on a loaded machine, never more); a prober per
    // worker would send about twice as many.
    expect(n).toBeGreaterThan(0);
    expect(n).toBeLessThanOrEqual(Math.ceil(intervals * 1.4) + 1);
  }, 40_000);

  it('/api/failures and /api/stats on the admin worker cover every worker', async () => {
    const { port, admin } = await serveWorkers({ '/bad': { kind: 'garbage' } });
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await get(port, '/bad');
      expect(r.status).toBeGreaterThanOrEqual(500);
      ids.push(String(r.headers['x-request-id']));
    }
    // The other workers' reports reach the admin worker within about a second (bounded wait).
    let listed: string[] = [];
    for (let i = 0; i < 50 && listed.length < 6; i++) {
      const j = (await (await fetch(`${admin}/api/failures`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as { failures: { id: string }[] };
      listed = j.failures.map((f) => f.id);
      if (listed.length < 6) await new Promise((r) => setTimeout(r, 100));
    }
    expect([...listed].sort()).toEqual([...ids].sort());
    // /api/stats counts the requests of every worker too.
    let total = 0;
    for (let i = 0; i < 50 && total < 6; i++) {
      const j = (await (await fetch(`${admin}/api/stats`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as { requests: { total: number } };
      total = j.requests.total;
      if (total < 6) await new Promise((r) => setTimeout(r, 100));
    }
    expect(total).toBe(6);
  }, 40_000);

  it('the timeline (1-minute figures, dashboard charts) and the alerts count the requests of every worker', async () => {
    // A webhook receiver: the instance notifies once, not once per worker.
    const hooks: { rule: string; state: string }[] = [];
    const receiver = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        hooks.push(JSON.parse(body) as { rule: string; state: string });
        res.end('ok');
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    onTestFinished(() => new Promise<void>((r) => receiver.close(() => r())));
    const hookUrl = `http://127.0.0.1:${(receiver.address() as net.AddressInfo).port}/hook`;
    const { port, admin, pids } = await serveWorkers(
      { '/ok': { kind: 'normal', cacheControl: 'no-store', body: 'ok\n' }, '/whoami': { kind: 'normal', cacheControl: 'no-store', body: 'me\n' }, '/bad': { kind: 'error', status: 500 } },
      { yaml: `alerts:\n  interval: 200ms\n  webhooks:\n    - url: ${hookUrl}\n  rules:\n    - name: errors\n      when: error_rate > 20%\n` },
    );
    // 10 requests on 10 connections: round-robin gives each worker about half.
    const N = 10;
    for (let i = 0; i < N; i++) expect((await get(port, '/ok')).status).toBe(200);
    type Dash = { why: { requests: number }; stats: { rates_1m: { latency_p50_ms: number | null } }; points: { cache: Record<string, number> }[] };
    const dash = () => api<Dash>(admin, '/api/dashboard');
    // The last minute (why.requests) counts all 10, not the admin worker's half.
    const d1 = await until(dash, (d) => d.why.requests >= N);
    expect(d1.why.requests).toBe(N);
    expect(d1.stats.rates_1m.latency_p50_ms).not.toBeNull();
    // The charts too, a few seconds late (each point waits for the other workers' part of its second).
    const charted = (d: Dash) => d.points.reduce((a, p) => a + Object.values(p.cache).reduce((x, y) => x + y, 0), 0);
    const d2 = await until(dash, (d) => charted(d) >= N, 15_000);
    expect(charted(d2)).toBe(N);
    // 5xx answered by worker 1 only: the admin worker itself answers none, yet the rule fires.
    const c = await connectionOn(port, pids, 1);
    try {
      for (let i = 0; i < 6; i++) expect((await c.send('/bad')).status).toBe(500);
    } finally {
      c.close();
    }
    type Alerts = { firing: string[]; rules: { name: string; value_text: string; summary: string }[] };
    const a = await until(() => api<Alerts>(admin, '/api/alerts'), (x) => x.firing.includes('errors'));
    expect(a.firing, JSON.stringify(a.rules)).toContain('errors');
    // More 5xx, now on both workers: the rule stays firing, and the receivers heard of it once. (With a rule
    // engine per worker, each would have notified about its own share.)
    for (let i = 0; i < 6; i++) expect((await get(port, '/bad')).status).toBe(500);
    await waitFor(() => hooks.length >= 1, 5000, () => JSON.stringify(hooks));
    await sleep(1500);
    expect(hooks.filter((h) => h.rule === 'errors').map((h) => h.state)).toEqual(['firing']);
  }, 60_000);

  it('/api/stats sums the cache over every worker (and says what the hand-off store holds); /api/backends counts a request in flight on worker 1 and splits max_connections; its latency reaches the 1-minute p99', async () => {
    const { port, admin, pids } = await serveWorkers({
      '/c': { kind: 'normal', cacheControl: 'max-age=600', body: 'x'.repeat(2000) },
      '/whoami': { kind: 'normal', cacheControl: 'no-store', body: 'me\n' },
      '/slow': { kind: 'slow', firstByteMs: 6000, then: { cacheControl: 'no-store', body: 'late\n' } },
    }, { yaml: '    max_connections: 5\n' });
    const c = await connectionOn(port, pids, 1);
    try {
      // Stored by worker 1 only (the admin worker never asked for it).
      expect((await c.send('/c')).status).toBe(200);
      type Stats = { workers: number; cache: { objects: number; bytes: number; handoff: { objects: number } | null } };
      const s = await until(() => api<Stats>(admin, '/api/stats'), (x) => x.cache.objects >= 1 && x.workers === 2);
      expect(s.cache.objects).toBe(1);
      expect(s.workers).toBe(2);
      expect(s.cache.bytes).toBeGreaterThan(2000);
      expect(s.cache.handoff?.objects).toBe(1);
      // A slow request held on worker 1: the instance's in-flight count for the backend includes it.
      const slow = c.send('/slow');
      type Backends = { pools: { backends: { name: string; inflight: number; max_connections: number | null; workers?: { worker: number; inflight: number; concurrency_limit: number | null }[] }[] }[] };
      const b = await until(() => api<Backends>(admin, '/api/backends'), (x) => x.pools[0]!.backends[0]!.inflight >= 1, 5000);
      const app1 = b.pools[0]!.backends[0]!;
      expect(app1.inflight).toBe(1);
      expect(app1.workers?.map((w) => [w.worker, w.inflight])).toEqual([[0, 0], [1, 1]]);
      // max_connections bounds what the instance sends the origin: split 3 + 2, not 5 per worker.
      expect(app1.max_connections).toBe(5);
      expect(app1.workers!.every((w) => w.concurrency_limit !== null && w.concurrency_limit <= 3)).toBe(true);
      expect((await slow).status).toBe(200);
      // Its 6 s reach the instance's latency histogram (merged bucket by bucket over IPC): the 1-minute p99 is it.
      type Rates = { rates_1m: { latency_p99_ms: number | null } };
      const r = await until(() => api<Rates>(admin, '/api/stats'), (x) => (x.rates_1m.latency_p99_ms ?? 0) >= 5000, 5000);
      expect(r.rates_1m.latency_p99_ms).toBeGreaterThanOrEqual(5000);
    } finally {
      c.close();
    }
  }, 60_000);

  it('a large object stays with the worker that fetched it: the other pulls it through the primary, not from the origin; a purge reaches both', async () => {
    const { port, admin, pids } = await serveWorkers({
      '/big': { kind: 'normal', cacheControl: 'max-age=600', body: 'a'.repeat(100_000) },
      '/whoami': { kind: 'normal', cacheControl: 'no-store', body: 'me\n' },
    });
    const c1 = await connectionOn(port, pids, 1);
    const c0 = await connectionOn(port, pids, 0);
    try {
      expect((await c1.send('/big')).body).toBe('a'.repeat(100_000));
      type Stats = { cache: { handoff: { objects: number; bytes: number } | null } };
      // The primary holds the entry, not the 100 kB body (coord/ipc.ts EAGER_MAX_BYTES).
      const s = await until(() => api<Stats>(admin, '/api/stats'), (x) => (x.cache.handoff?.objects ?? 0) >= 1);
      expect(s.cache.handoff!.bytes).toBeLessThan(100_000);
      expect((await c0.send('/big')).body).toBe('a'.repeat(100_000));
      expect(origin!.count('/big')).toBe(1);
      origin!.set('/big', { kind: 'normal', cacheControl: 'max-age=600', body: 'b'.repeat(100_000) });
      const purge = await fetch(`${admin}/api/purge`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ url: `http://127.0.0.1:${port}/big` }) });
      expect(purge.status).toBe(200);
      // Neither worker serves the purged copy, from its cache or from the other's.
      expect((await c0.send('/big')).body).toBe('b'.repeat(100_000));
      expect((await c1.send('/big')).body).toBe('b'.repeat(100_000));
      expect(origin!.count('/big')).toBe(2);
    } finally {
      c0.close();
      c1.close();
    }
  }, 60_000);

  it('replaces a worker that dies, and the other keeps serving meanwhile', async () => {
    const { port, pids } = await serveWorkers({ '/p': { kind: 'normal', cacheControl: 'max-age=600', body: 'p\n' } });
    expect(pids).toHaveLength(2);
    process.kill(pids[1]!, 'SIGKILL');
    await waitFor(() => /worker 1 \(pid \d+\) exited \(SIGKILL\); replacing it/.test(proc!.stderr()), 10_000, () => proc!.stderr());
    // Once the primary knows (a connection it handed over at the instant of the kill dies with the worker),
    // and while the replacement starts, every request is answered by the survivor.
    const during = [];
    for (let i = 0; i < 6; i++) during.push(await get(port, '/p'));
    expect(during.map((r) => r.status)).toEqual(Array(6).fill(200));
    await waitFor(() => /worker 1 \(pid \d+\) serving/.test(proc!.stderr()), 15_000, () => proc!.stderr());
    const newPid = Number(/worker 1 \(pid (\d+)\) serving/.exec(proc!.stderr())![1]);
    expect(newPid).not.toBe(pids[1]);
    const after = [];
    for (let i = 0; i < 6; i++) after.push(await get(port, '/p'));
    expect(after.map((r) => `${r.status} ${r.body.toString()}`)).toEqual(Array(6).fill('200 p\n'));
  }, 60_000);
});

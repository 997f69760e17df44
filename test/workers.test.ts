// `workers: N` (issue 12): a real `lacquer serve --workers 2` (a primary and two workers on one port,
// connections spread round-robin). What one process does must hold across workers: one origin request for
// concurrent misses, a purge reaching every worker before the admin API answers, a crashed worker replaced
// while the other keeps serving. Every request goes on a new connection, so both workers take requests.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
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

// Lab scenario `fleet` (issue 13): three Lacquer processes sharing one redis-server in front of one origin.
// A hot object expires every second under load; one instance is restarted mid-run, then Redis is. Reports
// origin requests per expiry across the fleet, client errors, the share of hits served from Redis, and the
// latency of a local hit, a Redis hit and an origin fetch measured one by one before the load.
// (Its own runner: the scenario runner of issue 6 drives one proxy process, this one drives a fleet.)
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';
import { startOrigin } from './origin.ts';
import { freePorts, ProcessGroup, waitForPort, type Child } from './processes.ts';
import { startRedisServer } from './redis-server.ts';

const MAIN = fileURLToPath(new URL('../cli/main.ts', import.meta.url));
/** One site name for the whole fleet, as behind a load balancer (the cache key includes the Host). */
const HOST = 'fleet.lab';
const INSTANCES = 3;

export type FleetLabResult = {
  durationS: number;
  requests: number;
  clientErrors: number;
  errorsDuringRedisRestart: number;
  /** Origin requests for the hot object, and how many times it expired during the run. */
  hotOriginRequests: number;
  hotExpiries: number;
  originRequestsPerExpiry: number;
  /** The same, leaving out the Redis outage (from the kill until 2 s after Redis is back), when every instance fetches alone. */
  originRequestsPerExpiryOutsideOutage: number;
  /**
   * Expiries seen by the origin: requests for the hot object more than 150 ms after the previous one start a
   * new one (the origin answers in 50 ms; the origin's Date has whole seconds, so a copy can be born up to
   * 1 s old and expire early: there can be more expiries than seconds). Requests closer together are
   * duplicates — the fleet failed to coalesce.
   */
  hotGenerations: number;
  originRequestsPerGeneration: number;
  originRequestsPerGenerationOutsideOutage: number;
  /** Origin requests for the hot object per second of the run (from the start of the load). */
  hotPerSecond: number[];
  /** Share of the misses of the local cache answered from Redis (Cache-Status detail="fleet"). */
  crossInstanceHitShare: number;
  byCacheStatus: Record<string, number>;
  /** Each instance's `lacquer_fleet_errors_total` by op at the end (instance 2's since its restart). */
  fleetErrors: Record<string, number>[];
  latencyMs: { localHit: Percentiles; redisHit: Percentiles; origin: Percentiles };
  events: string[];
};

type Percentiles = { p50: number; p90: number; p99: number; n: number };

function percentiles(xs: number[]): Percentiles {
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number) => Math.round((s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? 0) * 100) / 100;
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), n: s.length };
}

export async function runFleetLab(o: { short: boolean; log: (l: string) => void }): Promise<FleetLabResult> {
  const dir = mkdtempSync(path.join(tmpdir(), 'lacquer-fleet-lab-'));
  const group = new ProcessGroup();
  const redis = await startRedisServer({ maxmemoryPolicy: 'volatile-ttl' });
  const origin = await startOrigin({ behaviours: { '/hot': { kind: 'normal', cacheControl: 'max-age=1', bodySize: 4096, delayMs: 50 }, '*': { kind: 'normal', cacheControl: 'max-age=60', bodySize: 2048 } } });
  const agent = new Agent({ keepAliveTimeout: 2000, connections: 64 });
  const ports = await freePorts(INSTANCES);
  const adminPorts = await freePorts(INSTANCES);
  const procs: (Child | undefined)[] = [];
  const events: string[] = [];
  const t0 = Date.now();
  const event = (e: string) => {
    const line = `${((Date.now() - t0) / 1000).toFixed(1)}s ${e}`;
    events.push(line);
    o.log(`  ${line}`);
  };
  const start = async (i: number) => {
    const file = path.join(dir, `lacquer-${i}.yaml`);
    writeFileSync(
      file,
      JSON.stringify({
        listen: `127.0.0.1:${ports[i]}`,
        backends: [{ name: 'origin', url: origin.url }],
        fleet: { redis: redis.url, name: 'lab' },
        admin: { listen: `127.0.0.1:${adminPorts[i]}` },
        log: { access: 'off' },
        proxy: { drain_timeout: '2s' },
      }),
    );
    const child = group.spawn(`lacquer-${i}`, process.execPath, [MAIN, 'serve', '-c', file], { logFile: path.join(dir, `lacquer-${i}.log`) });
    await waitForPort(ports[i]!, 15_000, child);
    procs[i] = child;
  };
  const get = async (i: number, p: string) => {
    const t = performance.now();
    const res = await request(`http://127.0.0.1:${ports[i]}${p}`, { headers: { host: HOST }, dispatcher: agent, headersTimeout: 10_000, bodyTimeout: 10_000 });
    await res.body.arrayBuffer();
    return { status: res.statusCode, cacheStatus: String(res.headers['cache-status'] ?? ''), ms: performance.now() - t };
  };
  try {
    for (let i = 0; i < INSTANCES; i++) await start(i);
    await new Promise((r) => setTimeout(r, 500)); // every instance connected to Redis

    // Latency, one request at a time: a miss on instance 0 (origin), the same object on instance 1 (Redis
    // hit), again on instance 1 (local hit).
    const lat = { localHit: [] as number[], redisHit: [] as number[], origin: [] as number[] };
    const samples = o.short ? 60 : 200;
    for (let n = 0; n < samples; n++) {
      const p = `/lat/${n}`;
      const a = await get(0, p);
      if (/fwd=uri-miss/.test(a.cacheStatus)) lat.origin.push(a.ms);
      await new Promise((r) => setTimeout(r, 5)); // the shared write is off the request path
      const b = await get(1, p);
      if (b.cacheStatus.includes('detail="fleet"')) lat.redisHit.push(b.ms);
      const c = await get(1, p);
      if (/^lacquer; hit; ttl=\d+$/.test(c.cacheStatus)) lat.localHit.push(c.ms);
    }
    origin.reset();

    // The load: the hot object and a spread of others, from every instance in turn.
    const durationMs = o.short ? 10_000 : 30_000;
    const loadStart = Date.now();
    const end = loadStart + durationMs;
    // The load outlasts the faults by 3 s (on a loaded machine restarts take longer), within a hard cap.
    let faultsDoneAt = Number.POSITIVE_INFINITY;
    const cap = loadStart + 4 * durationMs;
    const running = () => Date.now() < cap && (Date.now() < end || Date.now() < faultsDoneAt + 3000);
    const byCache: Record<string, number> = {};
    let requests = 0;
    let errors = 0;
    let redisDown: [number, number] | undefined;
    let errorsDuringRedis = 0;
    const restarting = new Set<number>();
    const worker = async (w: number) => {
      let n = 0;
      while (running() && n < 200_000) {
        n++;
        let i = (w + n) % INSTANCES;
        if (restarting.has(i)) i = (i + 1) % INSTANCES; // the load balancer skips an instance being restarted
        const p = n % 2 === 0 ? '/hot' : `/item/${n % 50}`;
        requests++;
        try {
          const r = await get(i, p);
          const kind = r.cacheStatus.includes('detail="fleet"') ? 'fleet-hit' : /; hit/.test(r.cacheStatus) ? 'local-hit' : r.cacheStatus.includes('collapsed') ? 'collapsed' : r.cacheStatus.includes('fwd=') ? 'origin' : 'other';
          byCache[kind] = (byCache[kind] ?? 0) + 1;
          if (r.status !== 200) throw new Error(`status ${r.status}`);
        } catch {
          errors++;
          if (redisDown && Date.now() >= redisDown[0] && Date.now() <= redisDown[1] + 2000) errorsDuringRedis++;
        }
      }
    };
    const load = Promise.all(Array.from({ length: 12 }, (_, w) => worker(w)));
    const faults = (async () => {
      await new Promise((r) => setTimeout(r, durationMs / 3));
      restarting.add(2);
      await new Promise((r) => setTimeout(r, 200)); // drained from the balancer first
      event('instance 2: SIGTERM (graceful stop)');
      await procs[2]!.stop(5000);
      await start(2);
      restarting.delete(2);
      event('instance 2: started again (cold local cache)');
      await new Promise((r) => setTimeout(r, durationMs / 3 - 1000));
      const from = Date.now();
      event('redis: SIGKILL');
      await redis.stop(true);
      await new Promise((r) => setTimeout(r, 1000));
      await redis.start();
      redisDown = [from, Date.now()];
      event('redis: started again (empty)');
      faultsDoneAt = Date.now();
    })();
    await Promise.all([load, faults]);
    const durationS = (Date.now() - loadStart) / 1000; // the load ends last
    const fleetErrors = await Promise.all(
      adminPorts.map(async (p) => {
        const res = await request(`http://127.0.0.1:${p}/api/stats`, { dispatcher: agent }).catch(() => undefined);
        const stats = res ? ((await res.body.json()) as { fleet?: { errors: Record<string, number> } }) : undefined;
        return stats?.fleet?.errors ?? {};
      }),
    );
    const hot = origin.count('/hot');
    const expiries = Math.max(1, Math.round(durationS));
    const hotAt = origin.requests.filter((q) => q.path === '/hot').map((q) => q.at);
    const hotPerSecond = Array.from({ length: Math.ceil(durationS) }, (_, s) => hotAt.filter((t) => t >= loadStart + s * 1000 && t < loadStart + (s + 1) * 1000).length);
    const [downFrom, downTo] = redisDown ?? [0, 0];
    const outage = (t: number) => t >= downFrom && t <= downTo + 2000;
    const outsideExpiries = Math.max(1, Math.round(durationS - (downTo + 2000 - downFrom) / 1000));
    const generations = (times: number[]) => {
      let g = 0;
      let prev = Number.NEGATIVE_INFINITY;
      for (const t of [...times].sort((a, b) => a - b)) {
        if (t - prev > 150) g++;
        prev = t;
      }
      return Math.max(1, g);
    };
    const outside = hotAt.filter((t) => !outage(t));
    const localMisses = (byCache['fleet-hit'] ?? 0) + (byCache['origin'] ?? 0) + (byCache['collapsed'] ?? 0);
    return {
      durationS: Math.round(durationS * 10) / 10,
      requests,
      clientErrors: errors,
      errorsDuringRedisRestart: errorsDuringRedis,
      hotOriginRequests: hot,
      hotExpiries: expiries,
      originRequestsPerExpiry: Math.round((hot / expiries) * 100) / 100,
      originRequestsPerExpiryOutsideOutage: Math.round((outside.length / outsideExpiries) * 100) / 100,
      hotGenerations: generations(hotAt),
      originRequestsPerGeneration: Math.round((hot / generations(hotAt)) * 100) / 100,
      originRequestsPerGenerationOutsideOutage: Math.round((outside.length / generations(outside)) * 100) / 100,
      hotPerSecond,
      crossInstanceHitShare: localMisses ? Math.round(((byCache['fleet-hit'] ?? 0) / localMisses) * 1000) / 1000 : 0,
      byCacheStatus: byCache,
      fleetErrors,
      latencyMs: { localHit: percentiles(lat.localHit), redisHit: percentiles(lat.redisHit), origin: percentiles(lat.origin) },
      events,
    };
  } finally {
    await Promise.all(procs.map((c) => c?.stop(3000)));
    await agent.close();
    await origin.close();
    await redis.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

export function formatFleetLab(r: FleetLabResult): string {
  const l = r.latencyMs;
  const row = (name: string, p: Percentiles) => `| ${name} | ${p.p50} | ${p.p90} | ${p.p99} | ${p.n} |`;
  return [
    `fleet: 3 instances + Redis, hot object max-age=1 for ${r.durationS} s; instance restart and Redis restart mid-run`,
    `  requests ${r.requests}, client errors ${r.clientErrors} (${r.errorsDuringRedisRestart} around the Redis restart)`,
    `  hot object: ${r.hotOriginRequests} origin requests over ${r.hotExpiries} expiries = ${r.originRequestsPerExpiry} per expiry; ${r.originRequestsPerExpiryOutsideOutage} per expiry outside the Redis outage`,
    `  hot object: ${r.hotGenerations} expiries seen by the origin (requests > 150 ms apart): ${r.originRequestsPerGeneration} origin requests per expiry; ${r.originRequestsPerGenerationOutsideOutage} outside the Redis outage`,
    `  hot object origin requests per second: ${r.hotPerSecond.join(' ')}`,
    `  cross-instance hit share (local misses answered from Redis): ${(r.crossInstanceHitShare * 100).toFixed(1)}%`,
    `  by outcome: ${Object.entries(r.byCacheStatus).map(([k, v]) => `${k} ${v}`).join(', ')}`,
    `  Redis errors per instance (lacquer_fleet_errors_total): ${r.fleetErrors.map((e, i) => `#${i} ${Object.entries(e).map(([k, v]) => `${k}=${v}`).join(' ') || 'none'}`).join('; ')}`,
    '',
    '| latency (ms), one request at a time | p50 | p90 | p99 | n |',
    '|---|---:|---:|---:|---:|',
    row('local hit', l.localHit),
    row('Redis hit (another instance stored it)', l.redisHit),
    row('origin (miss, origin answers at once)', l.origin),
    '',
    ...r.events.map((e) => `  ${e}`),
  ].join('\n');
}

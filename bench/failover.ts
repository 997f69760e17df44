// Failover benchmark (the pools issue): steady load of uncacheable GETs on a pool of 3 backends, one
// backend process SIGKILLed mid-run; prints the client-visible errors and latency percentiles in the
// window around the kill. Then the cost of choosing: req/s of least_connections and hash relative to
// round_robin on the same three healthy backends.
//
//   node_modules/.bin/node bench/failover.ts [--seconds 12] [--kill-at 4] [--window 2] [--connections 16] [--director-seconds 4] [--rounds 3]
//
// Origins are separate processes (bench/origin-process.ts, path `/pass` = no-store 1 KiB); Lacquer and
// the load loop share this process, the same for every director, so the ratios compare like with like.
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { validateConfig } from '../src/config/load.ts';
import { startProxy, type Proxy } from '../src/main.ts';
import { BackendPool } from '../src/upstream/pool.ts';
import { firstJsonLine, killAllNow, start, stop, type Child } from './procs.ts';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '12' },
    'kill-at': { type: 'string', default: '4' },
    window: { type: 'string', default: '2' },
    connections: { type: 'string', default: '16' },
    'director-seconds': { type: 'string', default: '4' },
    rounds: { type: 'string', default: '3' },
  },
});
const SECONDS = Number(values.seconds);
const KILL_AT = Number(values['kill-at']);
const WINDOW = Number(values.window);
const CONNECTIONS = Number(values.connections);
const DIRECTOR_SECONDS = Number(values['director-seconds']);
const ROUNDS = Number(values.rounds);
const ROOT = join(import.meta.dirname, '..');

process.once('exit', killAllNow);

async function origin(name: string): Promise<{ child: Child; url: string }> {
  const child = start(name, process.execPath, [join(ROOT, 'bench/origin-process.ts')], { cwd: ROOT });
  const { port } = await firstJsonLine<{ port: number }>(child);
  return { child, url: `http://127.0.0.1:${port}` };
}

async function proxyFor(urls: string[], director: string): Promise<Proxy> {
  const config = validateConfig({
    listen: '127.0.0.1:0',
    pools: [{ name: 'bench', director, backends: urls.map((url, i) => ({ name: `app${i + 1}`, url })) }],
    routes: [{ pool: 'bench' }],
    log: { access: 'off', level: 'warn' },
    admin: { enabled: false },
  });
  return startProxy(config, { logDestination: 'off' });
}

type Sample = { at: number; ms: number; ok: boolean };

/** `connections` loops of sequential requests for `seconds`; `during` runs alongside. */
async function load(url: string, seconds: number, during?: (t0: number) => Promise<void>): Promise<Sample[]> {
  const agent = new Agent({ connections: CONNECTIONS, keepAliveTimeout: 10_000 });
  const samples: Sample[] = [];
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  let n = 0;
  const loop = async () => {
    while (performance.now() < end) {
      const s = performance.now();
      let ok = false;
      try {
        const res = await request(`${url}/pass?i=${n++}`, { dispatcher: agent });
        await res.body.dump();
        ok = res.statusCode === 200;
      } catch {
        ok = false;
      }
      const e = performance.now();
      samples.push({ at: s - t0, ms: e - s, ok });
    }
  };
  await Promise.all([...Array.from({ length: CONNECTIONS }, loop), during?.(t0)]);
  await agent.close();
  return samples;
}

function pct(sorted: number[], p: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]! : NaN;
}

const f1 = (x: number) => x.toFixed(1);

async function failover(): Promise<void> {
  const origins = await Promise.all(['origin1', 'origin2', 'origin3'].map(origin));
  const proxy = await proxyFor(origins.map((o) => o.url), 'round_robin');
  await load(proxy.url, 1); // warm-up: connections, JIT
  let killedAt = NaN;
  const samples = await load(proxy.url, SECONDS, async (t0) => {
    await new Promise((r) => setTimeout(r, KILL_AT * 1000));
    origins[1]!.child.proc.kill('SIGKILL');
    killedAt = performance.now() - t0;
  });
  const win = samples.filter((s) => s.at >= killedAt - WINDOW * 1000 && s.at <= killedAt + WINDOW * 1000);
  const before = samples.filter((s) => s.at < killedAt - WINDOW * 1000);
  const lat = (list: Sample[]) => list.map((s) => s.ms).sort((a, b) => a - b);
  const snap = proxy.ctx.pools.get('bench')!.snapshot();
  console.log(`failover: round_robin over 3 backends, ${CONNECTIONS} connections, ${SECONDS} s, app2 SIGKILLed at ${(killedAt / 1000).toFixed(2)} s`);
  console.log(`  all:    ${samples.length} requests, ${samples.filter((s) => !s.ok).length} client-visible errors, p50 ${f1(pct(lat(samples), 50))} ms, p99 ${f1(pct(lat(samples), 99))} ms`);
  console.log(`  before: p50 ${f1(pct(lat(before), 50))} ms, p99 ${f1(pct(lat(before), 99))} ms (steady state)`);
  console.log(
    `  kill ±${WINDOW} s: ${win.length} requests, ${win.filter((s) => !s.ok).length} client-visible errors, p50 ${f1(pct(lat(win), 50))} ms, p99 ${f1(pct(lat(win), 99))} ms, max ${f1(Math.max(...lat(win)))} ms`,
  );
  console.log(`  pool after: ${snap.backends.map((b) => `${b.name}=${b.state}`).join(' ')}; retry budget spent ${snap.retryBudget?.spent}/${snap.retryBudget?.allowance}, denied ${snap.retryBudget?.denied}`);
  await proxy.stop();
  await Promise.all(origins.map((o) => stop(o.child, 2000)));
}

async function directors(): Promise<void> {
  const origins = await Promise.all(['origin1', 'origin2', 'origin3'].map(origin));
  const kinds = ['round_robin', 'least_connections', 'hash'];
  const runs: Record<string, number[]> = { round_robin: [], least_connections: [], hash: [] };
  // Interleaved rounds in rotating order, median per director: the machine is shared and its load drifts.
  for (let round = 0; round < ROUNDS; round++) {
    for (let k = 0; k < kinds.length; k++) {
      const d = kinds[(k + round) % kinds.length]!;
      const proxy = await proxyFor(origins.map((o) => o.url), d);
      await load(proxy.url, 0.5); // warm-up: connections, JIT
      const s = await load(proxy.url, DIRECTOR_SECONDS);
      await proxy.stop();
      runs[d]!.push(s.filter((x) => x.ok).length / DIRECTOR_SECONDS);
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  for (const d of kinds) console.log(`  ${d.padEnd(18)} median ${median(runs[d]!).toFixed(0)} req/s (runs: ${runs[d]!.map((x) => x.toFixed(0)).join(', ')})`);
  const base = median(runs.round_robin!);
  console.log(
    `director overhead, end to end: least_connections/round_robin = ${(median(runs.least_connections!) / base).toFixed(3)}, hash/round_robin = ${(median(runs.hash!) / base).toFixed(3)} (req/s ratio; 1.0 = no cost)`,
  );
  await Promise.all(origins.map((o) => stop(o.child, 2000)));
}

/** The choice alone, without sockets: ns per `pool.choose()` on 3 healthy backends. */
async function chooseCost(): Promise<void> {
  const out: string[] = [];
  for (const d of ['round_robin', 'random', 'least_connections', 'hash', 'fallback']) {
    const config = validateConfig({ pools: [{ name: 'p', director: d, backends: [1, 2, 3].map((i) => ({ name: `b${i}`, url: `http://127.0.0.1:${10_000 + i}` })) }] });
    const pool = BackendPool.build(config, config.pools[0]!);
    const N = 1_000_000;
    const keys = Array.from({ length: 1024 }, (_, i) => `example.com/item/${i}`);
    for (let i = 0; i < 100_000; i++) pool.choose({ key: keys[i & 1023] });
    const t = performance.now();
    for (let i = 0; i < N; i++) pool.choose({ key: keys[i & 1023] });
    out.push(`${d} ${(((performance.now() - t) * 1e6) / N).toFixed(0)} ns`);
    pool.destroy();
  }
  console.log(`choose() cost per request, 3 backends: ${out.join(', ')}`);
}

await failover();
console.log(`directors: ${CONNECTIONS} connections, ${ROUNDS} rounds of ${DIRECTOR_SECONDS} s each, 3 healthy backends, uncacheable 1 KiB GETs`);
await directors();
await chooseCost();

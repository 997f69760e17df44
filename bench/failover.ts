// Failover benchmark (the pools issue; `npm run bench -- --failover`): steady load of uncacheable GETs
// on a pool of 3 backends, one backend process SIGKILLed mid-run; prints the client-visible errors and
// latency percentiles over the whole run (by default the minute around the kill) and in a short window
// around it, with a per-second timeline. Then the cost of choosing, three ways: server CPU µs per request
// and req/s of least_connections and hash against round_robin on three healthy backends (wrk, interleaved
// rounds, medians), and ns per `pool.choose()` alone.
//
//   node_modules/.bin/node bench/failover.ts [--seconds 60] [--kill-at 30] [--window 2] [--connections 16]
//                                            [--director-seconds 5] [--rounds 5]
//
// Origins and Lacquer are separate processes (bench/origin-process.ts, path `/pass` = no-store 1 KiB;
// `node src/cli/main.ts serve` with the shipped health and retry defaults). The failover load runs in
// this process (it times every request); the director runs use the bench's load generator (wrk).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { validateConfig } from '../src/config/load.ts';
import { BackendPool } from '../src/upstream/pool.ts';
import { pickGenerator } from './load.ts';
import { cpuMs, firstJsonLine, freePort, killAllNow, start, stop, waitForPort, type Child } from './procs.ts';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '60' },
    'kill-at': { type: 'string', default: '30' },
    window: { type: 'string', default: '2' },
    connections: { type: 'string', default: '16' },
    'director-seconds': { type: 'string', default: '5' },
    rounds: { type: 'string', default: '5' },
  },
});
const SECONDS = Number(values.seconds);
const KILL_AT = Number(values['kill-at']);
const WINDOW = Number(values.window);
const CONNECTIONS = Number(values.connections);
const DIRECTOR_SECONDS = Number(values['director-seconds']);
const ROUNDS = Number(values.rounds);
const ROOT = join(import.meta.dirname, '..');
if (![SECONDS, KILL_AT, WINDOW, CONNECTIONS, DIRECTOR_SECONDS, ROUNDS].every((n) => n > 0) || KILL_AT >= SECONDS) {
  console.error('every option takes a positive number, and --kill-at must fall within --seconds');
  process.exit(2);
}

// Bounded: a hard deadline from the plan; on any exit, our own children are killed.
const planSeconds = SECONDS + 1 + 3 * (1 + ROUNDS) * DIRECTOR_SECONDS + 20;
const deadline = setTimeout(() => {
  console.error(`failover bench: over its hard deadline of ${Math.round(planSeconds * 1.5 + 60)} s, stopping`);
  killAllNow();
  process.exit(3);
}, (planSeconds * 1.5 + 60) * 1000);
process.once('exit', killAllNow);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    killAllNow();
    process.exit(130);
  });
}
const dir = mkdtempSync(join(tmpdir(), 'lacquer-failover-'));
const generator = pickGenerator();

async function origin(name: string): Promise<{ child: Child; url: string }> {
  const child = start(name, process.execPath, [join(ROOT, 'bench/origin-process.ts')], { cwd: ROOT });
  const { port } = await firstJsonLine<{ port: number }>(child);
  return { child, url: `http://127.0.0.1:${port}` };
}

type Lacquer = { child: Child; url: string; adminUrl: string; accessLog: string | undefined };

/** `node src/cli/main.ts serve` on one pool of the given origins; health and retries at their defaults. */
async function proxyFor(urls: string[], director: string, o: { accessLog: boolean }): Promise<Lacquer> {
  const port = await freePort();
  const adminPort = await freePort();
  const accessLog = o.accessLog ? join(dir, `${director}-access.log`) : undefined;
  const config = {
    listen: `127.0.0.1:${port}`,
    pools: [{ name: 'bench', director, backends: urls.map((url, i) => ({ name: `app${i + 1}`, url })) }],
    routes: [{ pool: 'bench' }],
    log: { access: accessLog ?? 'off', level: 'warn' },
    proxy: { drain_timeout: '2s' },
    admin: { listen: `127.0.0.1:${adminPort}` },
  };
  validateConfig(config); // fail here, with the schema's message, rather than in the child
  const file = join(dir, `${director}.yaml`);
  writeFileSync(file, JSON.stringify(config, null, 2)); // YAML is a superset of JSON
  const child = start(`lacquer-${director}`, process.execPath, [join(ROOT, 'src/cli/main.ts'), 'serve', '-c', file], { cwd: ROOT });
  let err = '';
  child.proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  child.proc.stdout?.resume();
  await waitForPort(port, child).catch((e: Error) => {
    throw new Error(`${e.message}\n${err}`);
  });
  return { child, url: `http://127.0.0.1:${port}`, adminUrl: `http://127.0.0.1:${adminPort}`, accessLog };
}

/** status 0: no answer (the request failed at the socket). */
type Sample = { at: number; ms: number; ok: boolean; status: number };

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
      let status = 0;
      try {
        const res = await request(`${url}/pass?i=${n++}`, { dispatcher: agent });
        await res.body.dump();
        status = res.statusCode;
      } catch {
        status = 0;
      }
      const e = performance.now();
      samples.push({ at: s - t0, ms: e - s, ok: status === 200, status });
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
  const proxy = await proxyFor(
    origins.map((o) => o.url),
    'round_robin',
    { accessLog: true }, // the retries and the requests that met the dead backend are read from it
  );
  await load(proxy.url, 1); // warm-up: connections, JIT
  let killedAt = NaN;
  const samples = await load(proxy.url, SECONDS, async (t0) => {
    await new Promise((r) => setTimeout(r, KILL_AT * 1000));
    origins[1]!.child.proc.kill('SIGKILL');
    killedAt = performance.now() - t0;
  });
  const view = (await (await fetch(`${proxy.adminUrl}/api/backends`, { signal: AbortSignal.timeout(5000) })).json()) as { pools: { name: string; backends: { name: string; state: string }[] }[] };
  await stop(proxy.child); // flushes the access log
  await Promise.all(origins.map((o) => stop(o.child, 2000)));

  const lat = (list: Sample[]) => list.map((s) => s.ms).sort((a, b) => a - b);
  const w = WINDOW * 1000;
  const row = (name: string, list: Sample[]) => {
    const l = lat(list);
    const bad = list.filter((s) => !s.ok);
    const byStatus = [...new Set(bad.map((s) => s.status))].map((st) => `${bad.filter((s) => s.status === st).length}× ${st || 'no answer'}`).join(', ');
    return `| ${name} | ${list.length} | ${bad.length}${byStatus ? ` (${byStatus})` : ''} | ${f1(pct(l, 50))} | ${f1(pct(l, 99))} | ${f1(l.at(-1) ?? NaN)} |`;
  };
  const span = Math.max(KILL_AT, SECONDS - KILL_AT);
  console.log(`### Failover: round_robin over 3 backends (health and retries at their defaults), ${CONNECTIONS} connections, ${SECONDS} s; app2 SIGKILLed at ${(killedAt / 1000).toFixed(2)} s`);
  console.log('');
  console.log('| window | requests | client-visible errors | p50 ms | p99 ms | max ms |');
  console.log('|---|---:|---:|---:|---:|---:|');
  console.log(row(`whole run (kill −${KILL_AT} s … +${(SECONDS - KILL_AT).toFixed(0)} s${span * 2 >= 60 ? ', the minute around the kill' : ''})`, samples));
  console.log(row(`steady, before −${WINDOW} s`, samples.filter((s) => s.at < killedAt - w)));
  console.log(row(`kill ±${WINDOW} s`, samples.filter((s) => s.at >= killedAt - w && s.at <= killedAt + w)));
  console.log(row(`after +${WINDOW} s`, samples.filter((s) => s.at > killedAt + w)));
  const timeline: string[] = [];
  for (let sec = -3; sec < 3; sec++) {
    const b = samples.filter((s) => s.at >= killedAt + sec * 1000 && s.at < killedAt + (sec + 1) * 1000);
    const l = lat(b);
    timeline.push(`[${sec >= 0 ? '+' : ''}${sec} s: ${b.length} req, ${b.filter((s) => !s.ok).length} err, p99 ${f1(pct(l, 99))} ms, max ${f1(l.at(-1) ?? NaN)} ms]`);
  }
  console.log('');
  console.log(`Timeline, 1 s buckets from the kill: ${timeline.join(' ')}`);
  const lines = readFileSync(proxy.accessLog!, 'utf8')
    .split('\n')
    .filter((l) => l.includes('"type":"access"'))
    .map((l) => JSON.parse(l) as { retry?: string; attempts?: { backend: string; outcome: string }[] });
  const retried = lines.filter((l) => l.retry !== undefined);
  const reasons = [...new Set(retried.map((l) => l.retry))].map((r) => `${retried.filter((l) => l.retry === r).length}× ${r}`).join(', ');
  const metDead = lines.filter((l) => (l.attempts ?? []).some((a) => a.backend === 'app2' && a.outcome !== 'ok')).length;
  const pool = view.pools.find((p) => p.name === 'bench');
  console.log(
    `Access log: ${lines.length} requests, ${retried.length} retried (${reasons || 'none'}), ${metDead} met the dead app2. Pool afterwards (admin API): ${pool?.backends.map((b) => `${b.name}=${b.state}`).join(' ')}.`,
  );
}

type DirectorRun = { rps: number; cpuUs: number; p99: number; errors: number };

async function directors(): Promise<void> {
  const origins = await Promise.all(['origin1', 'origin2', 'origin3'].map(origin));
  const kinds = ['round_robin', 'least_connections', 'hash'] as const;
  // One Lacquer per director, all started up front; only the measured one is under load. The access log
  // is off here so the director's share of the CPU per request is as large as it can be.
  const proxies = new Map<string, Lacquer>();
  for (const d of kinds) proxies.set(d, await proxyFor(origins.map((o) => o.url), d, { accessLog: false }));
  // Distinct URLs, so `hash` spreads over the backends as it would on real traffic (wrk only).
  const script = join(dir, 'distinct.lua');
  writeFileSync(script, 'local n = 0\nfunction request() n = n + 1; return wrk.format("GET", "/pass?i=" .. n) end\n');
  const one = async (d: string, seconds: number): Promise<DirectorRun> => {
    const p = proxies.get(d)!;
    const c0 = cpuMs(p.child.pid);
    const r = await generator.run({ url: `${p.url}/pass`, seconds, connections: CONNECTIONS, threads: 2, script: generator.kind === 'wrk' ? script : undefined });
    return { rps: r.rps, cpuUs: r.requests > 0 ? ((cpuMs(p.child.pid) - c0) * 1000) / r.requests : NaN, p99: r.p99Ms, errors: r.errors + r.non2xx };
  };
  // Warm-up: connections and JIT. A fresh process keeps getting cheaper for ~10 s of load (with a 1 s
  // warm-up, whichever director came first in round 1 was 10–30 % dearer), so each gets a full run first.
  for (const d of kinds) await one(d, DIRECTOR_SECONDS);
  const runs: Record<string, DirectorRun[]> = { round_robin: [], least_connections: [], hash: [] };
  // Interleaved rounds in rotating order, median per director: the machine is shared and its load drifts.
  for (let round = 0; round < ROUNDS; round++) {
    for (let k = 0; k < kinds.length; k++) {
      const d = kinds[(k + round) % kinds.length]!;
      runs[d]!.push(await one(d, DIRECTOR_SECONDS));
    }
  }
  for (const p of proxies.values()) await stop(p.child);
  await Promise.all(origins.map((o) => stop(o.child, 2000)));

  const median = (xs: number[]) => {
    const a = [...xs].sort((x, y) => x - y);
    return a.length % 2 ? a[(a.length - 1) / 2]! : (a[a.length / 2 - 1]! + a[a.length / 2]!) / 2;
  };
  const m = (d: string, f: keyof DirectorRun) => median(runs[d]!.map((r) => r[f]));
  console.log('');
  console.log(
    `### Directors: ${generator.kind} ${generator.version} -t2 -c${CONNECTIONS}, ${ROUNDS} interleaved rounds of ${DIRECTOR_SECONDS} s, 3 healthy backends, uncacheable 1 KiB GETs${generator.kind === 'wrk' ? ' on distinct URLs' : ' on one URL (autocannon)'}, access log off; medians`,
  );
  console.log('');
  console.log('| director | server CPU µs/req | vs round_robin | req/s | vs round_robin | p99 ms | errors | CPU µs/req per round | req/s per round |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---|---|');
  for (const d of kinds) {
    const dc = Math.round((m(d, 'cpuUs') - m('round_robin', 'cpuUs')) * 10) / 10 || 0; // no "-0.0"
    console.log(
      `| ${d} | ${m(d, 'cpuUs').toFixed(1)} | ${d === 'round_robin' ? '—' : `${(m(d, 'cpuUs') / m('round_robin', 'cpuUs')).toFixed(3)}× (${dc > 0 ? '+' : dc < 0 ? '−' : '±'}${Math.abs(dc).toFixed(1)} µs)`} | ${m(d, 'rps').toFixed(0)} | ${d === 'round_robin' ? '—' : `${(m(d, 'rps') / m('round_robin', 'rps')).toFixed(3)}×`} | ${m(d, 'p99').toFixed(2)} | ${runs[d]!.reduce((a, r) => a + r.errors, 0)} | ${runs[d]!.map((r) => r.cpuUs.toFixed(1)).join(', ')} | ${runs[d]!.map((r) => r.rps.toFixed(0)).join(', ')} |`,
    );
  }
}

/** The choice alone, without sockets: ns per `pool.choose()` on 3 healthy backends (median of 3 × 1M calls). */
function chooseCost(): void {
  const out: string[] = [];
  for (const d of ['round_robin', 'random', 'least_connections', 'hash', 'fallback']) {
    const config = validateConfig({ pools: [{ name: 'p', director: d, backends: [1, 2, 3].map((i) => ({ name: `b${i}`, url: `http://127.0.0.1:${10_000 + i}` })) }] });
    const pool = BackendPool.build(config, config.pools[0]!);
    const N = 1_000_000;
    const keys = Array.from({ length: 1024 }, (_, i) => `example.com/item/${i}`);
    for (let i = 0; i < 100_000; i++) pool.choose({ key: keys[i & 1023] });
    const ns: number[] = [];
    for (let rep = 0; rep < 3; rep++) {
      const t = performance.now();
      for (let i = 0; i < N; i++) pool.choose({ key: keys[i & 1023] });
      ns.push(((performance.now() - t) * 1e6) / N);
    }
    out.push(`${d} ${ns.sort((a, b) => a - b)[1]!.toFixed(0)} ns`);
    pool.destroy();
  }
  console.log('');
  console.log(`\`pool.choose()\` alone, 3 healthy backends, 1,024 keys (median of 3 × 1M calls, in this process): ${out.join(', ')}.`);
}

try {
  await failover();
  await directors();
  chooseCost();
} catch (e) {
  console.error(`failover bench failed: ${(e as Error).stack ?? e}`);
  killAllNow();
  process.exit(1);
}
clearTimeout(deadline);
rmSync(dir, { recursive: true, force: true });

// `npm run bench`: throughput, latency and memory of Lacquer beside a bare Node server (the ceiling),
// the origin itself and, when installed, Varnish and nginx proxy_cache — in one run, on loopback, with the
// load generator in its own process. Measurements are interleaved over several rounds so background noise
// hits every column alike; each figure is the median of its rounds. Everything it starts, it stops (bounded).
//
//   node bench/run.ts [--duration 8] [--rounds 3] [--quick] [--only id,id] [--no-fill] [--no-varnish] [--no-nginx] [--no-minimal] [--no-workers] [--workers-balance reuseport|cluster]
//                     [--fill-workers 1,auto]   (one fill phase per entry: the `workers` setting it runs with)
//                     [--connections 64] [--threads 2] [--generator wrk|autocannon] [--profile] [--json FILE]
//                     [--baseline DIR]   (DIR: another checkout of Lacquer, run as an extra column for before/after)
//                     [--node-flags=--max-semi-space-size=32]   (extra node flags for Lacquer, not the baseline)
//                     [--nginx-upstream-keepalive]   (nginx keeps origin connections; its default is one per miss)
//   --compare   the speed comparison of issue 6: the same columns (ceiling, Lacquer, Varnish, nginx; 1 KiB and
//               100 KiB hits, pass) without the fill phase. Every run prints the comparison table (req/s,
//               p99 and CPU per request as ratios, Lacquer over each other server); --compare only skips the fill.
//   --tls       instead of the columns: bench/tls.ts (TLS with HTTP/1.1 by wrk and HTTP/2 by h2load, 1 KiB and
//               100 KiB hits, Lacquer against nginx with the same certificate when installed; the CPU cost of
//               compression: stored forms against compressing each response). Takes --duration, --rounds, --quick.
//   --failover  instead of the columns: bench/failover.ts (3 backends under steady load, one SIGKILLed;
//               errors and p99 around the kill; director cost in CPU µs/request, req/s and choose() ns).
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { pickGenerator, type LoadResult } from './load.ts';
import { childPids, cpuMs, firstJsonLine, freePort, group, killAllNow, processRssBytes, rssBytes, start, stop, stopAll, waitForPort, type Child } from './procs.ts';
import { summarise } from './top-self.ts';
import { LAUNCHERS } from '../src/lab/proxies/index.ts';
import type { Availability, RunningProxy } from '../src/lab/proxies/types.ts';
import { DEFAULT_TUNING } from '../src/lab/scenario.ts';

const ROOT = resolve(import.meta.dirname, '..');
const MiB = 1024 * 1024;

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string' },
    rounds: { type: 'string' },
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    'no-fill': { type: 'boolean', default: false },
    'no-varnish': { type: 'boolean', default: false },
    'no-nginx': { type: 'boolean', default: false },
    'no-minimal': { type: 'boolean', default: false },
    'no-workers': { type: 'boolean', default: false },
    'workers-balance': { type: 'string', default: 'reuseport' },
    'nginx-upstream-keepalive': { type: 'boolean', default: false },
    compare: { type: 'boolean', default: false },
    failover: { type: 'boolean', default: false },
    tls: { type: 'boolean', default: false },
    connections: { type: 'string', default: '64' },
    threads: { type: 'string', default: '2' },
    generator: { type: 'string' },
    'fill-memory': { type: 'string', default: '64' },
    'fill-workers': { type: 'string', default: '1,auto' },
    profile: { type: 'boolean', default: false },
    json: { type: 'string' },
    baseline: { type: 'string' },
    'node-flags': { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});

if (args.help) {
  const text = readFileSync(new URL(import.meta.url), 'utf8').split('\n');
  console.log(text.slice(0, text.findIndex((l) => l.startsWith('import'))).join('\n'));
  process.exit(0);
}

if (args.tls) {
  const pass = [...(args.quick ? ['--quick'] : []), ...(args.duration ? ['--seconds', args.duration] : []), ...(args.rounds ? ['--rounds', args.rounds] : [])];
  // Its own process with the terminal as its output (it prints its own table); bounded to 30 minutes.
  const r = spawnSync(process.execPath, [join(ROOT, 'bench/tls.ts'), ...pass], { cwd: ROOT, stdio: 'inherit', timeout: 30 * 60_000, killSignal: 'SIGTERM' });
  process.exit(r.status ?? 1);
}

if (args.failover) {
  // The failover scenario is its own script (Lacquer with a pool of three origins); run it as a child,
  // bounded, and pass its report through.
  const quick = args.quick ? ['--seconds', '20', '--kill-at', '10', '--director-seconds', '3', '--rounds', '1'] : [];
  const child = start('failover', process.execPath, [join(ROOT, 'bench/failover.ts'), ...quick], { cwd: ROOT });
  child.proc.stdout?.pipe(process.stdout);
  child.proc.stderr?.pipe(process.stderr);
  const limit = setTimeout(() => void stop(child, 2000), 15 * 60_000);
  process.once('exit', killAllNow);
  const code = await child.exited;
  clearTimeout(limit);
  process.exit(code ?? 1);
}

const seconds = Number(args.duration ?? (args.quick ? 3 : 8));
const rounds = Number(args.rounds ?? (args.quick ? 1 : 3));
const warmupSeconds = args.quick ? 1 : 2;
const connections = Number(args.connections);
const threads = Number(args.threads);
const fillMiB = Number(args['fill-memory']);
if (!(seconds > 0 && rounds > 0 && connections > 0 && threads > 0 && fillMiB > 0)) {
  console.error('--duration, --rounds, --connections, --threads and --fill-memory take positive numbers');
  process.exit(2);
}

type Target = 'ceiling' | 'minimal' | 'lacquer' | 'workers' | 'baseline' | 'varnish' | 'nginx' | 'direct';
type Workload = '1 KiB hit' | '100 KiB hit' | 'pass (no-store)';
type Scenario = { id: string; workload: Workload; target: Target; path: string; bytes: number };

const SCENARIOS: Scenario[] = [
  { id: 'ceiling', workload: '1 KiB hit', target: 'ceiling', path: '/1k', bytes: 1024 },
  { id: 'minimal-1k', workload: '1 KiB hit', target: 'minimal', path: '/1k', bytes: 1024 },
  { id: 'lacquer-1k', workload: '1 KiB hit', target: 'lacquer', path: '/1k', bytes: 1024 },
  { id: 'workers-1k', workload: '1 KiB hit', target: 'workers', path: '/1k', bytes: 1024 },
  { id: 'varnish-1k', workload: '1 KiB hit', target: 'varnish', path: '/1k', bytes: 1024 },
  { id: 'nginx-1k', workload: '1 KiB hit', target: 'nginx', path: '/1k', bytes: 1024 },
  { id: 'ceiling-100k', workload: '100 KiB hit', target: 'ceiling', path: '/100k', bytes: 102_400 },
  { id: 'minimal-100k', workload: '100 KiB hit', target: 'minimal', path: '/100k', bytes: 102_400 },
  { id: 'lacquer-100k', workload: '100 KiB hit', target: 'lacquer', path: '/100k', bytes: 102_400 },
  { id: 'workers-100k', workload: '100 KiB hit', target: 'workers', path: '/100k', bytes: 102_400 },
  { id: 'varnish-100k', workload: '100 KiB hit', target: 'varnish', path: '/100k', bytes: 102_400 },
  { id: 'nginx-100k', workload: '100 KiB hit', target: 'nginx', path: '/100k', bytes: 102_400 },
  { id: 'direct-pass', workload: 'pass (no-store)', target: 'direct', path: '/pass', bytes: 1024 },
  { id: 'minimal-pass', workload: 'pass (no-store)', target: 'minimal', path: '/pass', bytes: 1024 },
  { id: 'lacquer-pass', workload: 'pass (no-store)', target: 'lacquer', path: '/pass', bytes: 1024 },
  { id: 'workers-pass', workload: 'pass (no-store)', target: 'workers', path: '/pass', bytes: 1024 },
  { id: 'varnish-pass', workload: 'pass (no-store)', target: 'varnish', path: '/pass', bytes: 1024 },
  { id: 'nginx-pass', workload: 'pass (no-store)', target: 'nginx', path: '/pass', bytes: 1024 },
  // --baseline DIR: the same three Lacquer columns from another checkout (before/after in one run).
  { id: 'baseline-1k', workload: '1 KiB hit', target: 'baseline', path: '/1k', bytes: 1024 },
  { id: 'baseline-100k', workload: '100 KiB hit', target: 'baseline', path: '/100k', bytes: 102_400 },
  { id: 'baseline-pass', workload: 'pass (no-store)', target: 'baseline', path: '/pass', bytes: 1024 },
];

const TARGET_LABEL: Record<Target, string> = { ceiling: 'bare node:http (ceiling)', minimal: 'minimal Node proxy (../shared/reference)', lacquer: 'Lacquer (1 worker)', workers: 'Lacquer (workers: auto)', baseline: 'Lacquer (baseline)', varnish: 'Varnish', nginx: 'nginx', direct: 'origin directly' };

/** cpuUs: CPU time the server process used per request (user + system) — much less noisy than req/s on a shared machine. */
type Sample = LoadResult & { rssBytes: number; cpuUs: number };

// ---------------------------------------------------------------------------------------------
// Bounded: a hard deadline from the plan; on any exit, our own children are killed.

// Varnish and nginx run through the lab's launchers (src/lab/proxies), `bench` variant: one harness for both.
const varnishAvail: Availability = LAUNCHERS.varnish.available();
const nginxAvail: Availability = LAUNCHERS.nginx.available();
const hint = (name: string, a: Availability) => (a.ok ? '' : `${name} is not installed (${a.why}), so its column is skipped. To add it: ${a.install}`);
const VARNISH_HINT = hint('Varnish', varnishAvail);
const NGINX_HINT = hint('nginx', nginxAvail);
const hasVarnish = !args['no-varnish'] && varnishAvail.ok;
const hasNginx = !args['no-nginx'] && nginxAvail.ok;
/** The minimal proxy is run from where it lives (../shared/reference/), never copied into the project. */
const MINIMAL = resolve(ROOT, '../shared/reference/minimal-proxy.js');
const hasMinimal = !args['no-minimal'] && existsSync(MINIMAL);
const hasWorkers = !args['no-workers'];
const baselineRoot = args.baseline ? resolve(args.baseline) : undefined;
let scenarios = SCENARIOS.filter((s) => (s.target !== 'varnish' || hasVarnish) && (s.target !== 'nginx' || hasNginx) && (s.target !== 'baseline' || baselineRoot) && (s.target !== 'minimal' || hasMinimal) && (s.target !== 'workers' || hasWorkers));
const onlyIds = args.only ? new Set(args.only.split(',')) : undefined;
if (onlyIds) {
  scenarios = scenarios.filter((s) => onlyIds.has(s.id));
  if (scenarios.length === 0 && !onlyIds.has('fill')) {
    console.error(`--only matched nothing; ids: ${SCENARIOS.map((s) => s.id).join(', ')}, fill`);
    process.exit(2);
  }
}
const doFill = !args['no-fill'] && !args.compare && (!onlyIds || onlyIds.has('fill'));
const fillSeconds = Math.max(seconds, 5);
/** One fill per entry: `1` (one process) and `auto` (one worker per core) unless --fill-workers says otherwise. */
const fillWorkers = args['fill-workers']!.split(',').filter(Boolean);
const planSeconds = scenarios.length * (warmupSeconds + rounds * seconds) + (doFill ? fillWorkers.length * (fillSeconds + 20) : 0);
const hardDeadlineMs = (planSeconds * 1.5 + 120) * 1000;
const deadline = setTimeout(() => {
  console.error(`bench: over its hard deadline of ${Math.round(hardDeadlineMs / 1000)} s, stopping`);
  killAllNow();
  process.exit(3);
}, hardDeadlineMs);
process.on('exit', killAllNow);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    killAllNow();
    process.exit(130);
  });
}

const dir = mkdtempSync(join(tmpdir(), 'lacquer-bench-'));
const generator = pickGenerator(args.generator);
const log = (s: string) => process.stderr.write(`${s}\n`);

// ---------------------------------------------------------------------------------------------
// The processes under test.

function nodeChild(name: string, file: string, env: Record<string, string> = {}): Child {
  return start(name, process.execPath, [join(ROOT, file)], { cwd: ROOT, env: { ...process.env, ...env } });
}

async function startLacquer(name: string, originPort: number, memory: string, o: { profileDir?: string; root?: string; flags?: string[]; workers?: string } = {}): Promise<{ child: Child; port: number; accessLog: string }> {
  const port = await freePort();
  const adminPort = await freePort();
  const accessLog = join(dir, `${name}-access.log`);
  const config = join(dir, `${name}.yaml`);
  writeFileSync(
    config,
    [
      `listen: 127.0.0.1:${port}`,
      `workers: ${o.workers ?? 1}`,
      `workers_balance: ${args['workers-balance']}`,
      'cache:',
      `  memory: ${memory}`,
      'backends:',
      '  - name: origin',
      `    url: http://127.0.0.1:${originPort}`,
      'log:',
      `  access: ${accessLog}   # logging stays on: it is part of the cost`,
      'proxy:',
      '  drain_timeout: 2s',
      'admin:   # stays on (metrics are counted per request), on a port of its own',
      `  listen: 127.0.0.1:${adminPort}`,
      '',
    ].join('\n'),
  );
  const prof = o.profileDir ? ['--cpu-prof', `--cpu-prof-dir=${o.profileDir}`] : [];
  const root = o.root ?? ROOT;
  const child = start(name, process.execPath, [...(o.flags ?? []), ...prof, join(root, 'src/cli/main.ts'), 'serve', '-c', config], { cwd: root });
  let err = '';
  child.proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  child.proc.stdout?.resume();
  await waitForPort(port, child).catch((e: Error) => {
    throw new Error(`${e.message}\n${err}`);
  });
  return { child, port, accessLog };
}

/** Varnish or nginx through its lab launcher, `bench` variant, in a world-readable directory (their workers drop privileges). */
async function startProxyOf(kind: 'varnish' | 'nginx', originPort: number): Promise<RunningProxy & { port: number }> {
  const port = await freePort();
  const where = join(dir, kind);
  chmodSync(dir, 0o755);
  mkdirSync(where, { recursive: true, mode: 0o755 });
  chmodSync(where, 0o755);
  const input = { dir: where, port, backends: [{ name: 'origin', host: '127.0.0.1', port: originPort }], tuning: DEFAULT_TUNING, healthPath: '/1k', cacheMemory: '256m', upstreamKeepalive: args['nginx-upstream-keepalive'] };
  return { ...(await LAUNCHERS[kind].start(input, 'bench', group)), port };
}

/** ../shared/reference/minimal-proxy.js, started from the project root (it resolves undici from its cwd). */
async function startMinimal(originPort: number): Promise<{ child: Child; port: number }> {
  const port = await freePort();
  const child = start('minimal', process.execPath, [MINIMAL], { cwd: ROOT, env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', ORIGIN: `http://127.0.0.1:${originPort}` } });
  child.proc.stdout?.resume();
  child.proc.stderr?.resume();
  await waitForPort(port, child);
  return { child, port };
}

async function get(port: number, path: string): Promise<{ status: number; headers: Headers; bytes: number }> {
  const r = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(5000) });
  const b = await r.arrayBuffer();
  return { status: r.status, headers: r.headers, bytes: b.byteLength };
}

/** Measuring the wrong thing is worse than not measuring: check each column answers what it should. */
async function verify(s: Scenario, port: number): Promise<void> {
  await get(port, s.path); // the miss that fills the cache
  const r = await get(port, s.path);
  const problems: string[] = [];
  if (r.status !== 200) problems.push(`status ${r.status}`);
  if (r.bytes !== s.bytes) problems.push(`${r.bytes} body bytes, expected ${s.bytes}`);
  const hit =
    s.target === 'lacquer' || s.target === 'baseline' || s.target === 'workers'
      ? /; hit/.test(r.headers.get('cache-status') ?? '')
      : s.target === 'minimal'
        ? r.headers.get('x-cache') === 'HIT'
      : s.target === 'varnish'
        ? /^\d+ \d+$/.test(r.headers.get('x-varnish') ?? '')
        : s.target === 'nginx'
          ? r.headers.get('x-cache-status') === 'HIT'
          : undefined;
  if (hit !== undefined && hit !== s.workload.endsWith('hit'))
    problems.push(`${hit ? 'a hit' : 'not a hit'} on the second request (cache-status: ${r.headers.get('cache-status')}, x-varnish: ${r.headers.get('x-varnish')}, x-cache-status: ${r.headers.get('x-cache-status')})`);
  if (problems.length) throw new Error(`${s.id}: ${problems.join('; ')}`);
}

type Fill = {
  workers: string;
  memoryBytes: number;
  startBytes: number;
  rssBytes: number;
  hwmBytes: number;
  /** Per process, primary first: RSS just after start, at the end and peak. */
  procs: { pid: number; startBytes: number; rssBytes: number; hwmBytes: number }[];
  rps: number;
  /** Server CPU (every process of the instance) per request. */
  cpuUs: number;
  hits: number;
  lines: number;
  keys: number;
};

async function runFill(originPort: number, workers: string, nodeFlags: string[] | undefined): Promise<Fill> {
  const memoryBytes = fillMiB * MiB;
  const keys = Math.ceil((2 * memoryBytes) / 102_400);
  const f = await startLacquer(`lacquer-fill-${workers}`, originPort, `${fillMiB}MiB`, { flags: nodeFlags, workers });
  // The workers listen a moment after the primary's port answers (reuseport): let every one start.
  await new Promise((r) => setTimeout(r, workers === '1' ? 200 : 1500));
  const pids = [f.child.pid, ...childPids(f.child.pid)];
  const start0 = new Map(pids.map((p) => [p, processRssBytes(p)]));
  const startBytes = rssBytes(f.child.pid);
  const script = join(dir, 'fill.lua');
  writeFileSync(
    script,
    [
      `local keys = ${keys}`,
      'function setup(thread) thread:set("seed", math.random(1, 1000000000)) end',
      'function init(args) math.randomseed(seed) end',
      'function request() return wrk.format("GET", "/fill/" .. math.random(0, keys - 1)) end',
      '',
    ].join('\n'),
  );
  log(`bench: fill phase, workers ${workers}, cache.memory ${fillMiB} MiB, ${keys} distinct 100 KiB objects, ${fillSeconds} s`);
  let rps = NaN;
  let requests = 0;
  const cpu0 = cpuMs(f.child.pid);
  if (generator.kind === 'wrk') {
    const r = await generator.run({ url: `http://127.0.0.1:${f.port}/`, seconds: fillSeconds, connections, threads, script });
    rps = r.rps;
    requests = r.requests;
  } else {
    // autocannon cannot randomise paths here: fetch every key twice from this process instead.
    const t0 = performance.now();
    for (let pass = 0; pass < 2; pass++) {
      for (let i = 0; i < keys; i += 16) await Promise.all(Array.from({ length: Math.min(16, keys - i) }, (_, j) => get(f.port, `/fill/${i + j}`)));
    }
    requests = 2 * keys;
    rps = requests / ((performance.now() - t0) / 1000);
  }
  const cpuUs = requests > 0 ? ((cpuMs(f.child.pid) - cpu0) * 1000) / requests : NaN;
  const procs = [f.child.pid, ...childPids(f.child.pid)].map((pid) => ({ pid, startBytes: start0.get(pid) ?? 0, rssBytes: processRssBytes(pid), hwmBytes: processRssBytes(pid, 'VmHWM') }));
  const rss = rssBytes(f.child.pid);
  const hwm = rssBytes(f.child.pid, 'VmHWM');
  await stop(f.child);
  const lines = readFileSync(f.accessLog, 'utf8').split('\n').filter((l) => l.includes('"type":"access"'));
  log(`  fill workers ${workers}: ${Math.round(rps)} req/s, cpu ${cpuUs.toFixed(0)} µs/req, rss ${procs.map((p) => `${(p.startBytes / MiB).toFixed(0)}→${(p.rssBytes / MiB).toFixed(0)} (peak ${(p.hwmBytes / MiB).toFixed(0)})`).join(' + ')} MiB`);
  return { workers, memoryBytes, startBytes, rssBytes: rss, hwmBytes: hwm, procs, rps, cpuUs, hits: lines.filter((l) => l.includes('"served":"hit"')).length, lines: lines.length, keys };
}

const median = (xs: number[]) => {
  const a = [...xs].sort((x, y) => x - y);
  return a.length === 0 ? NaN : a.length % 2 ? a[(a.length - 1) / 2] : (a[a.length / 2 - 1] + a[a.length / 2]) / 2;
};

// ---------------------------------------------------------------------------------------------

const machine = {
  date: new Date().toISOString(),
  nproc: availableParallelism(),
  cpu: /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpus()[0]?.model ?? 'unknown',
  node: process.version,
  generator: `${generator.kind} ${generator.version}`,
  varnish: hasVarnish && varnishAvail.ok ? varnishAvail.version : undefined,
  nginx: hasNginx && nginxAvail.ok ? nginxAvail.version : undefined,
  loadavg: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
};

log(`bench: ${machine.cpu}, ${machine.nproc} cpus, node ${machine.node}, ${machine.generator}${machine.varnish ? `, varnish ${machine.varnish}` : ''}${machine.nginx ? `, nginx ${machine.nginx}` : ''}; load average ${machine.loadavg}`);
if (!hasVarnish && !args['no-varnish']) log(`bench: ${VARNISH_HINT}`);
if (!hasNginx && !args['no-nginx']) log(`bench: ${NGINX_HINT}`);
if (generator.kind !== 'wrk') log('bench: wrk is not installed, using autocannon (slower, in Node): apt-get install -y wrk');
log(`bench: ${scenarios.length} columns × ${rounds} rounds × ${seconds} s, -t${threads} -c${connections}; temp dir ${dir}`);

const samples = new Map<string, Sample[]>(scenarios.map((s) => [s.id, []]));
const fills: Fill[] = [];
let profiles: string[] = [];

try {
  const origin = nodeChild('origin', 'bench/origin-process.ts');
  const bare = nodeChild('ceiling', 'bench/bare-server.ts');
  const originPort = (await firstJsonLine<{ port: number }>(origin)).port;
  const barePort = (await firstJsonLine<{ port: number }>(bare)).port;
  const profileDir = args.profile ? join(dir, 'profile') : undefined;
  const nodeFlags = args['node-flags']?.split(' ').filter(Boolean);
  const lacquer = await startLacquer('lacquer', originPort, '256MiB', { profileDir, flags: nodeFlags });
  const workers = scenarios.some((s) => s.target === 'workers') ? await startLacquer('workers', originPort, '256MiB', { flags: nodeFlags, workers: 'auto' }) : undefined;
  const minimal = scenarios.some((s) => s.target === 'minimal') ? await startMinimal(originPort) : undefined;
  const baseline = baselineRoot && scenarios.some((s) => s.target === 'baseline') ? await startLacquer('baseline', originPort, '256MiB', { root: baselineRoot }) : undefined;
  const varnish = scenarios.some((s) => s.target === 'varnish') ? await startProxyOf('varnish', originPort) : undefined;
  const nginx = scenarios.some((s) => s.target === 'nginx') ? await startProxyOf('nginx', originPort) : undefined;

  const where: Record<Target, { port: number; child: { pid: number } } | undefined> = {
    ceiling: { port: barePort, child: bare },
    direct: { port: originPort, child: origin },
    lacquer: { port: lacquer.port, child: lacquer.child },
    workers: workers ? { port: workers.port, child: workers.child } : undefined,
    minimal,
    baseline: baseline ? { port: baseline.port, child: baseline.child } : undefined,
    varnish: varnish ? { port: varnish.port, child: varnish } : undefined,
    nginx: nginx ? { port: nginx.port, child: nginx } : undefined,
  };
  const run = async (s: Scenario, secs: number): Promise<Sample> => {
    const w = where[s.target]!;
    const cpu0 = cpuMs(w.child.pid);
    const r = await generator.run({ url: `http://127.0.0.1:${w.port}${s.path}`, seconds: secs, connections, threads });
    return { ...r, rssBytes: rssBytes(w.child.pid), cpuUs: r.requests > 0 ? ((cpuMs(w.child.pid) - cpu0) * 1000) / r.requests : NaN };
  };

  for (const s of scenarios) await verify(s, where[s.target]!.port);
  log(`bench: warm-up ${warmupSeconds} s per column`);
  for (const s of scenarios) await run(s, warmupSeconds);

  for (let round = 0; round < rounds; round++) {
    // Rotate the order each round so no column always follows the same neighbour.
    const k = (round * 3) % scenarios.length;
    const order = [...scenarios.slice(k), ...scenarios.slice(0, k)];
    for (const s of order) {
      const r = await run(s, seconds);
      samples.get(s.id)!.push(r);
      log(`  round ${round + 1}/${rounds} ${s.id.padEnd(13)} ${Math.round(r.rps).toString().padStart(7)} req/s  p50 ${r.p50Ms.toFixed(2)} ms  p99 ${r.p99Ms.toFixed(2)} ms  cpu ${r.cpuUs.toFixed(1)} µs/req  rss ${(r.rssBytes / MiB).toFixed(0)} MiB${r.errors || r.non2xx ? `  errors ${r.errors} non-2xx ${r.non2xx}` : ''}`);
    }
  }
  await stop(lacquer.child);
  if (workers) await stop(workers.child);
  if (minimal) await stop(minimal.child);
  if (baseline) await stop(baseline.child);
  if (varnish) await varnish.stop();
  if (nginx) await nginx.stop();
  await stop(bare);

  if (profileDir) {
    profiles = readdirSync(profileDir).filter((f) => f.endsWith('.cpuprofile')).map((f) => join(profileDir, f));
    for (const p of profiles) console.log(`\n\`\`\`\n${summarise(p, 30)}\n\`\`\`\n`);
  }

  if (doFill) {
    // The memory bound: fill a small cache past its size with distinct 100 KiB objects (random keys over
    // twice the capacity, so objects are stored, hit and evicted), then read the server's RSS. Once per
    // --fill-workers entry: one process, and `workers: auto` (whose misses cross the primary: coord/ipc.ts).
    for (const w of fillWorkers) fills.push(await runFill(originPort, w, nodeFlags));
  }
  await stopAll();
} catch (e) {
  console.error(`bench failed: ${(e as Error).stack ?? e}`);
  await stopAll();
  clearTimeout(deadline);
  process.exit(1);
}
clearTimeout(deadline);

// ---------------------------------------------------------------------------------------------
// Report (Markdown, so it can go into BENCHMARKS.md as is).

type Med = { rps: number; p50: number; p99: number; rss: number; cpuUs: number; errors: number; rounds: Sample[] };
const med = new Map<string, Med>();
for (const [id, xs] of samples) {
  med.set(id, {
    rps: median(xs.map((x) => x.rps)),
    p50: median(xs.map((x) => x.p50Ms)),
    p99: median(xs.map((x) => x.p99Ms)),
    rss: median(xs.map((x) => x.rssBytes)),
    cpuUs: median(xs.map((x) => x.cpuUs)),
    errors: xs.reduce((a, x) => a + x.errors + x.non2xx, 0),
    rounds: xs,
  });
}

const k = (n: number) => (Number.isFinite(n) ? (n >= 1000 ? `${(n / 1000).toFixed(1)}k` : n.toFixed(0)) : '—');
const ms = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : '—');
const out: string[] = [];
out.push(
  `Date ${machine.date}; ${machine.nproc} CPUs (${machine.cpu}); Node ${machine.node}; ${machine.generator} -t${threads} -c${connections}; ${machine.varnish ? `Varnish ${machine.varnish} (-s malloc,256m, builtin VCL)` : 'Varnish not installed'}; ${machine.nginx ? `nginx ${machine.nginx} (Debian's nginx.conf + proxy_cache keys_zone, max_size=256m, ${args['nginx-upstream-keepalive'] ? 'upstream keepalive 32' : 'HTTP/1.0 to the origin without keep-alive'})` : 'nginx not installed'}; load average at start ${machine.loadavg}.`,
);
out.push(`${rounds} round(s) of ${seconds} s per column, interleaved; figures are medians over rounds.`);
out.push('');
out.push('| workload | server | req/s | p50 ms | p99 ms | server CPU µs/req | RSS MiB | errors | req/s per round |');
out.push('|---|---|---:|---:|---:|---:|---:|---:|---|');
for (const s of scenarios) {
  const m = med.get(s.id)!;
  out.push(`| ${s.workload} | ${TARGET_LABEL[s.target]} | ${k(m.rps)} | ${ms(m.p50)} | ${ms(m.p99)} | ${m.cpuUs.toFixed(1)} | ${(m.rss / MiB).toFixed(0)} | ${m.errors} | ${m.rounds.map((r) => k(r.rps)).join(', ')} |`);
}

/** Ratio of medians, with the spread of the same ratio taken round by round (both measured side by side). */
const ratio = (a: string, b: string) => {
  const ma = med.get(a);
  const mb = med.get(b);
  if (!ma || !mb) return undefined;
  const per = ma.rounds.map((r, i) => r.rps / (mb.rounds[i]?.rps ?? NaN)).filter(Number.isFinite);
  return { value: ma.rps / mb.rps, min: Math.min(...per), max: Math.max(...per) };
};
/** Server CPU per request, a over b: the cost ratio, robust to other load on the machine. */
const cpuRatio = (a: string, b: string) => {
  const ma = med.get(a);
  const mb = med.get(b);
  return ma && mb ? ma.cpuUs / mb.cpuUs : undefined;
};
/** margin: by how much the target is met or missed in this run, in the target's own unit. */
const targets: { name: string; value: string; target: string; met: boolean | undefined; margin?: string }[] = [];
const addRatio = (name: string, a: string, b: string, min: number | undefined) => {
  const r = ratio(a, b);
  if (!r) return;
  const spread = rounds > 1 ? ` (rounds ${r.min.toFixed(2)}–${r.max.toFixed(2)})` : '';
  const c = cpuRatio(a, b);
  const cpu = c === undefined || !Number.isFinite(c) ? '' : `; CPU/req ${c.toFixed(2)}×`;
  const margin = min === undefined ? undefined : `${r.value >= min ? 'by' : 'short by'} ${Math.abs(Math.round((r.value / min - 1) * 100))} %`;
  targets.push({ name, value: `${r.value.toFixed(2)}×${spread}${cpu}`, target: min === undefined ? '—' : `≥ ${min}×`, met: min === undefined ? undefined : r.value >= min, margin });
};
// Issue 12's targets: one worker against the minimal proxy and the ceiling; `workers: auto` against Varnish.
addRatio('1 KiB hit / minimal Node proxy', 'lacquer-1k', 'minimal-1k', 0.9);
addRatio('100 KiB hit / minimal Node proxy', 'lacquer-100k', 'minimal-100k', 0.95);
addRatio('pass / minimal Node proxy', 'lacquer-pass', 'minimal-pass', 1);
addRatio('1 KiB hit / bare Node ceiling', 'lacquer-1k', 'ceiling', 0.85);
addRatio('workers: auto, 1 KiB hit / 1 worker', 'workers-1k', 'lacquer-1k', undefined);
addRatio('workers: auto, 100 KiB hit / 1 worker', 'workers-100k', 'lacquer-100k', undefined);
addRatio('workers: auto, pass / 1 worker', 'workers-pass', 'lacquer-pass', undefined);
addRatio('workers: auto, 1 KiB hit / Varnish hit', 'workers-1k', 'varnish-1k', 1);
addRatio('workers: auto, 100 KiB hit / Varnish hit', 'workers-100k', 'varnish-100k', 1);
addRatio('workers: auto, pass / Varnish pass', 'workers-pass', 'varnish-pass', 1.1);
addRatio('minimal proxy 1 KiB hit / ceiling', 'minimal-1k', 'ceiling', undefined);
addRatio('1 KiB hit / Varnish hit', 'lacquer-1k', 'varnish-1k', 1);
addRatio('100 KiB hit / Varnish hit', 'lacquer-100k', 'varnish-100k', 1);
addRatio('pass / origin directly', 'lacquer-pass', 'direct-pass', undefined);
addRatio('pass / Varnish pass', 'lacquer-pass', 'varnish-pass', 1);
addRatio('1 KiB hit / nginx hit', 'lacquer-1k', 'nginx-1k', undefined);
addRatio('100 KiB hit / nginx hit', 'lacquer-100k', 'nginx-100k', undefined);
addRatio('pass / nginx pass', 'lacquer-pass', 'nginx-pass', undefined);
addRatio('100 KiB hit / bare Node ceiling (100 KiB)', 'lacquer-100k', 'ceiling-100k', undefined);
addRatio('1 KiB hit / baseline', 'lacquer-1k', 'baseline-1k', undefined);
addRatio('100 KiB hit / baseline', 'lacquer-100k', 'baseline-100k', undefined);
addRatio('pass / baseline', 'lacquer-pass', 'baseline-pass', undefined);
addRatio('Varnish 1 KiB hit / ceiling', 'varnish-1k', 'ceiling', undefined);
addRatio('Varnish pass / origin directly', 'varnish-pass', 'direct-pass', undefined);
addRatio('nginx 1 KiB hit / ceiling', 'nginx-1k', 'ceiling', undefined);
addRatio('nginx pass / origin directly', 'nginx-pass', 'direct-pass', undefined);
for (const id of ['lacquer-1k', 'lacquer-100k']) {
  const m = med.get(id);
  if (m) {
    const margin = `${ms(Math.abs(m.p99 - 5))} ms ${m.p99 < 5 ? 'under' : 'over'}`;
    targets.push({ name: `p99 of a ${id === 'lacquer-1k' ? '1 KiB' : '100 KiB'} hit at ${connections} connections`, value: `${ms(m.p99)} ms`, target: '< 5 ms', met: m.p99 < 5, margin });
  }
}
for (const fill of fills) {
  const limit = fill.memoryBytes + 100 * MiB;
  targets.push({
    name: `RSS with the cache full (cache.memory ${fillMiB} MiB, workers: ${fill.workers})`,
    value: `${(fill.rssBytes / MiB).toFixed(0)} MiB (peak ${(fill.hwmBytes / MiB).toFixed(0)} MiB)`,
    target: `≤ ${(limit / MiB).toFixed(0)} MiB`,
    met: fill.hwmBytes <= limit,
    margin: `${(Math.abs(fill.hwmBytes - limit) / MiB).toFixed(0)} MiB ${fill.hwmBytes <= limit ? 'under' : 'over'} (peak)`,
  });
}
out.push('');
out.push('| ratio / target | measured | target | met |');
out.push('|---|---:|---:|:---:|');
for (const t of targets) out.push(`| ${t.name} | ${t.value} | ${t.target} | ${t.met === undefined ? '' : `${t.met ? 'yes' : '**no**'}${t.margin ? `, ${t.margin}` : ''}`} |`);
if (fills.length) {
  const first = fills[0]!;
  out.push('');
  out.push(`Fill phase: ${first.keys} distinct 100 KiB objects requested at random for ${fillSeconds} s, cache.memory ${fillMiB} MiB; CPU is user + system of every process of the instance; RSS read from /proc/<pid>/status (VmRSS after start, at the end, VmHWM peak), per process (the primary first with workers), and their sum.`);
  out.push('');
  out.push('| fill | req/s | server CPU µs/req | hits / logged | RSS MiB per process: start → end (peak) | instance RSS MiB: start → end (peak sum) |');
  out.push('|---|---:|---:|---:|---|---:|');
  for (const f of fills) {
    const per = f.procs.map((p) => `${(p.startBytes / MiB).toFixed(0)} → ${(p.rssBytes / MiB).toFixed(0)} (${(p.hwmBytes / MiB).toFixed(0)})`).join(' + ');
    out.push(`| workers: ${f.workers} | ${k(f.rps)} | ${f.cpuUs.toFixed(0)} | ${f.hits} / ${f.lines} | ${per} | ${(f.startBytes / MiB).toFixed(0)} → ${(f.rssBytes / MiB).toFixed(0)} (${(f.hwmBytes / MiB).toFixed(0)}) |`);
  }
}

// The comparison of issue 6: per workload, every server side by side and Lacquer's ratio to each
// (req/s: higher is better for Lacquer; p99 and CPU per request: lower is better for Lacquer).
const COMPARE: { workload: Workload; ceiling: string; minimal: string; lacquer: string; workers: string; varnish: string; nginx: string }[] = [
  { workload: '1 KiB hit', ceiling: 'ceiling', minimal: 'minimal-1k', lacquer: 'lacquer-1k', workers: 'workers-1k', varnish: 'varnish-1k', nginx: 'nginx-1k' },
  { workload: '100 KiB hit', ceiling: 'ceiling-100k', minimal: 'minimal-100k', lacquer: 'lacquer-100k', workers: 'workers-100k', varnish: 'varnish-100k', nginx: 'nginx-100k' },
  { workload: 'pass (no-store)', ceiling: 'direct-pass', minimal: 'minimal-pass', lacquer: 'lacquer-pass', workers: 'workers-pass', varnish: 'varnish-pass', nginx: 'nginx-pass' },
];
const cell = (id: string) => {
  const m = med.get(id);
  return m ? `${k(m.rps)} · ${ms(m.p99)} ms · ${m.cpuUs.toFixed(1)} µs` : '—';
};
const vs = (a: string, b: string) => {
  const ma = med.get(a);
  const mb = med.get(b);
  return ma && mb ? `${(ma.rps / mb.rps).toFixed(2)}× · ${(ma.p99 / mb.p99).toFixed(2)}× · ${(ma.cpuUs / mb.cpuUs).toFixed(2)}×` : '—';
};
if (COMPARE.some((c) => med.has(c.lacquer))) {
  out.push('');
  out.push('Comparison (medians; each cell: req/s · p99 · server CPU per request; ratios are Lacquer over the other server, in the same order — req/s above 1× and p99 or CPU below 1× favour Lacquer). The ceiling is a bare node:http server for hits and the origin itself for pass.');
  out.push('');
  out.push('| workload | ceiling | minimal proxy | Lacquer (1 worker) | Lacquer (workers: auto) | Varnish | nginx | Lacquer / ceiling | Lacquer / minimal | workers / Varnish | workers / nginx |');
  out.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const c of COMPARE) {
    if (!med.has(c.lacquer)) continue;
    out.push(`| ${c.workload} | ${cell(c.ceiling)} | ${cell(c.minimal)} | ${cell(c.lacquer)} | ${cell(c.workers)} | ${cell(c.varnish)} | ${cell(c.nginx)} | ${vs(c.lacquer, c.ceiling)} | ${vs(c.lacquer, c.minimal)} | ${vs(c.workers, c.varnish)} | ${vs(c.workers, c.nginx)} |`);
  }
}
if (!hasVarnish && !args['no-varnish']) out.push('', VARNISH_HINT);
if (!hasNginx && !args['no-nginx']) out.push('', NGINX_HINT);
console.log(out.join('\n'));
if (args.json) writeFileSync(args.json, `${JSON.stringify({ machine, seconds, rounds, connections, threads, samples: Object.fromEntries(samples), fills }, null, 2)}\n`);
if (profiles.length) log(`bench: CPU profiles kept in ${dir}/profile`);
else rmSync(dir, { recursive: true, force: true });

// `npm run bench -- --tls`: the client-facing edge under load — TLS with HTTP/1.1 (wrk) and HTTP/2 (h2load,
// Debian's nghttp2-client), 1 KiB and 100 KiB hits, against nginx with the same certificate when it is
// installed; and the CPU cost of compression: Lacquer's stored forms (compressed once) against compressing
// every response (a pass, as nginx's gzip does for every hit). Lacquer only, when nginx is missing.
//
//   node bench/tls.ts [--seconds 5] [--rounds 2] [--connections 32] [--streams 10] [--quick]
//
// Each figure: the median over rounds; columns interleaved per round. CPU is the server process's own
// (user + system) per request, the figure least disturbed by other load on the machine.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { parseWrk, type LoadResult } from './load.ts';
import { LAUNCHERS } from '../src/lab/proxies/index.ts';
import { DEFAULT_TUNING } from '../src/lab/scenario.ts';
import { cpuMs, firstJsonLine, freePort, killAllNow, start, stop, stopAll, waitForPort, type Child } from './procs.ts';

const ROOT = resolve(import.meta.dirname, '..');
const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string' },
    rounds: { type: 'string' },
    connections: { type: 'string', default: '32' },
    streams: { type: 'string', default: '10' },
    quick: { type: 'boolean', default: false },
    tls: { type: 'boolean', default: true },
  },
  strict: false,
});
const seconds = Number(args.seconds ?? (args.quick ? 3 : 5));
const rounds = Number(args.rounds ?? (args.quick ? 1 : 2));
const connections = Number(args.connections);
const streams = Number(args.streams);

const has = (bin: string, flag: string) => spawnSync(bin, [flag], { encoding: 'utf8' }).error === undefined;
if (!has('h2load', '--version')) {
  console.error('bench --tls: h2load is not installed: apt-get install -y nghttp2-client');
  process.exit(2);
}
if (!has('wrk', '--version')) {
  console.error('bench --tls: wrk is not installed: apt-get install -y wrk');
  process.exit(2);
}
// nginx through the lab's launcher (one harness, issue 12): its `bench` config, made a TLS listener below.
const nginxAvail = LAUNCHERS.nginx.available();
const nginx = nginxAvail.ok ? nginxAvail.version : undefined;
const NGINX_HINT = nginxAvail.ok ? '' : `nginx is not installed, so its column is skipped. To add it: ${nginxAvail.install}`;

const dir = mkdtempSync(join(tmpdir(), 'lacquer-bench-tls-'));
const log = (s: string) => process.stderr.write(`${s}\n`);
const deadline = setTimeout(
  () => {
    log('bench --tls: over its deadline, stopping');
    killAllNow();
    process.exit(3);
  },
  (20 * rounds * (seconds + 3) + 120) * 1000,
);
process.on('exit', () => {
  killAllNow();
  rmSync(dir, { recursive: true, force: true });
});

// One certificate for both servers (ECDSA P-256, what a modern site serves).
execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'key.pem', '-out', 'cert.pem', '-days', '2', '-subj', '/CN=bench.test', '-addext', 'subjectAltName=DNS:bench.test,IP:127.0.0.1'], { cwd: dir, stdio: 'ignore' });
const cert = join(dir, 'cert.pem');
const key = join(dir, 'key.pem');

type Sample = LoadResult & { cpuUs: number };
type Column = { id: string; server: 'lacquer' | 'nginx'; tool: 'wrk' | 'h2load'; scheme: 'http' | 'https'; path: string; encoding?: string; label: string };

async function runTool(c: Column, port: number, secs: number): Promise<LoadResult> {
  const url = `${c.scheme}://127.0.0.1:${port}${c.path}`;
  const header = c.encoding ? [`Accept-Encoding: ${c.encoding}`] : [];
  if (c.tool === 'wrk') {
    const out = execFileSync('wrk', ['-t2', `-c${connections}`, `-d${secs}s`, '--latency', '--timeout', '5s', ...header.flatMap((h) => ['-H', h]), url], { encoding: 'utf8', timeout: (secs + 20) * 1000 });
    return parseWrk(out);
  }
  const out = execFileSync('h2load', ['-c', String(connections), '-m', String(streams), '-t', '2', '-D', String(secs), '--warm-up-time=1', ...header.flatMap((h) => ['-H', h]), url], { encoding: 'utf8', timeout: (secs + 25) * 1000 });
  return parseH2load(out);
}

/** h2load's summary: `finished in 5.00s, 12345.67 req/s`, `requests: … N succeeded, N failed, N errored`, mean request time. */
export function parseH2load(out: string): LoadResult {
  const num = (re: RegExp) => Number(re.exec(out)?.[1] ?? NaN);
  const unit = (v: string, u: string) => Number(v) * (u === 'us' ? 0.001 : u === 's' ? 1000 : 1);
  const t = /time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)/.exec(out);
  const succeeded = num(/(\d+) succeeded/);
  return {
    rps: num(/finished in [\d.]+\w+, ([\d.]+) req\/s/),
    // h2load reports min/max/mean, no percentiles: p50 is the mean here, p99 the max.
    p50Ms: t ? unit(t[5]!, t[6]!) : NaN,
    p99Ms: t ? unit(t[3]!, t[4]!) : NaN,
    requests: succeeded,
    errors: num(/(\d+) errored/) + num(/(\d+) failed/),
    non2xx: num(/status codes: \d+ 2xx, (\d+) 3xx/) + num(/status codes: \d+ 2xx, \d+ 3xx, (\d+) 4xx/) + num(/status codes: \d+ 2xx, \d+ 3xx, \d+ 4xx, (\d+) 5xx/),
  };
}

async function startLacquer(originPort: number): Promise<{ child: Child; tls: number; plain: number }> {
  const tlsPort = await freePort();
  const plain = await freePort();
  const admin = await freePort();
  const config = join(dir, 'lacquer.yaml');
  writeFileSync(
    config,
    [
      'listen:',
      `  - 127.0.0.1:${plain}`,
      `  - address: 127.0.0.1:${tlsPort}`,
      `    tls: { cert: ${cert}, key: ${key} }`,
      'backends:',
      `  - { name: origin, url: "http://127.0.0.1:${originPort}" }`,
      'log:',
      `  access: ${join(dir, 'access.log')}   # logging stays on: it is part of the cost`,
      'proxy: { drain_timeout: 2s }',
      `admin: { listen: "127.0.0.1:${admin}" }`,
      '',
    ].join('\n'),
  );
  const child = start('lacquer', process.execPath, [join(ROOT, 'src/cli/main.ts'), 'serve', '-c', config], { cwd: ROOT });
  child.proc.stdout?.resume();
  child.proc.stderr?.resume();
  await waitForPort(tlsPort, child);
  return { child, tls: tlsPort, plain };
}

/** nginx with the same certificate: TLS, HTTP/2, its proxy_cache, and gzip for the same types Lacquer compresses. */
async function startNginxTls(originPort: number): Promise<{ child: Child; port: number }> {
  const port = await freePort();
  const prefix = join(dir, 'nginx');
  // The lab's nginx config keeps its temp files in nginx-tmp/; its workers (www-data when root) must reach them.
  execFileSync('mkdir', ['-p', join(prefix, 'nginx-tmp')]);
  chmodSync(dir, 0o755);
  chmodSync(prefix, 0o755);
  const conf = LAUNCHERS.nginx.config({ dir: prefix, port, backends: [{ name: 'origin', host: '127.0.0.1', port: originPort }], tuning: DEFAULT_TUNING, healthPath: '/1k', cacheMemory: '256m' }, 'bench')
    .text.replace(`listen 127.0.0.1:${port};`, `listen 127.0.0.1:${port} ssl http2;\n    ssl_certificate ${cert};\n    ssl_certificate_key ${key};`)
    .replace('  gzip on;', '  gzip on;\n  gzip_types text/plain application/json application/javascript text/css;');
  writeFileSync(join(prefix, 'nginx.conf'), conf);
  const child = start('nginx', 'nginx', ['-c', join(prefix, 'nginx.conf'), '-p', prefix, '-e', join(prefix, 'error.log')], { processGroup: true });
  child.proc.stdout?.resume();
  child.proc.stderr?.resume();
  await waitForPort(port, child);
  return { child, port };
}

const COLUMNS: Column[] = [
  { id: 'l-h1-plain-1k', server: 'lacquer', tool: 'wrk', scheme: 'http', path: '/1k', label: 'HTTP/1.1 plain, 1 KiB hit' },
  { id: 'l-h1-1k', server: 'lacquer', tool: 'wrk', scheme: 'https', path: '/1k', label: 'HTTP/1.1 TLS, 1 KiB hit' },
  { id: 'l-h1-100k', server: 'lacquer', tool: 'wrk', scheme: 'https', path: '/100k', label: 'HTTP/1.1 TLS, 100 KiB hit' },
  { id: 'l-h2-1k', server: 'lacquer', tool: 'h2load', scheme: 'https', path: '/1k', label: 'HTTP/2 TLS, 1 KiB hit' },
  { id: 'l-h2-100k', server: 'lacquer', tool: 'h2load', scheme: 'https', path: '/100k', label: 'HTTP/2 TLS, 100 KiB hit' },
  { id: 'l-h2-100k-br', server: 'lacquer', tool: 'h2load', scheme: 'https', path: '/100k', encoding: 'br', label: 'HTTP/2 TLS, 100 KiB hit, br (stored form)' },
  { id: 'l-h2-100k-gzip', server: 'lacquer', tool: 'h2load', scheme: 'https', path: '/100k', encoding: 'gzip', label: 'HTTP/2 TLS, 100 KiB hit, gzip (stored form)' },
  { id: 'l-h2-pass100k', server: 'lacquer', tool: 'h2load', scheme: 'https', path: '/pass100k', label: 'HTTP/2 TLS, 100 KiB pass' },
  { id: 'l-h2-pass100k-gzip', server: 'lacquer', tool: 'h2load', scheme: 'https', path: '/pass100k', encoding: 'gzip', label: 'HTTP/2 TLS, 100 KiB pass, gzip per response' },
  { id: 'n-h1-1k', server: 'nginx', tool: 'wrk', scheme: 'https', path: '/1k', label: 'HTTP/1.1 TLS, 1 KiB hit' },
  { id: 'n-h1-100k', server: 'nginx', tool: 'wrk', scheme: 'https', path: '/100k', label: 'HTTP/1.1 TLS, 100 KiB hit' },
  { id: 'n-h2-1k', server: 'nginx', tool: 'h2load', scheme: 'https', path: '/1k', label: 'HTTP/2 TLS, 1 KiB hit' },
  { id: 'n-h2-100k', server: 'nginx', tool: 'h2load', scheme: 'https', path: '/100k', label: 'HTTP/2 TLS, 100 KiB hit' },
  { id: 'n-h2-100k-gzip', server: 'nginx', tool: 'h2load', scheme: 'https', path: '/100k', encoding: 'gzip', label: 'HTTP/2 TLS, 100 KiB hit, gzip per response' },
];

const median = (xs: number[]) => {
  const a = [...xs].sort((x, y) => x - y);
  return a.length === 0 ? NaN : a.length % 2 ? a[(a.length - 1) / 2]! : (a[a.length / 2 - 1]! + a[a.length / 2]!) / 2;
};

const samples = new Map<string, Sample[]>();
try {
  const origin = start('origin', process.execPath, [join(ROOT, 'bench/origin-process.ts')], { cwd: ROOT });
  const originPort = (await firstJsonLine<{ port: number }>(origin)).port;
  const lacquer = await startLacquer(originPort);
  const ng = nginx ? await startNginxTls(originPort) : undefined;
  if (!ng) log(`bench --tls: ${NGINX_HINT}; Lacquer figures only`);
  const columns = COLUMNS.filter((c) => c.server === 'lacquer' || ng);
  const where = (c: Column) => (c.server === 'nginx' ? { port: ng!.port, pid: ng!.child.pid } : { port: c.scheme === 'https' ? lacquer.tls : lacquer.plain, pid: lacquer.child.pid });
  const measure = async (c: Column, secs: number): Promise<Sample> => {
    const w = where(c);
    const cpu0 = cpuMs(w.pid);
    const r = await runTool(c, w.port, secs);
    return { ...r, cpuUs: r.requests > 0 ? ((cpuMs(w.pid) - cpu0) * 1000) / r.requests : NaN };
  };
  log(`bench --tls: ${columns.length} columns × ${rounds} rounds × ${seconds} s, ${connections} connections${`, h2load ${streams} streams each`}; load average ${(await import('node:fs')).readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
  for (const c of columns) await measure(c, 1); // fill the caches, make the stored forms, warm the JIT
  for (let round = 0; round < rounds; round++) {
    const k = (round * 3) % columns.length;
    for (const c of [...columns.slice(k), ...columns.slice(0, k)]) {
      const s = await measure(c, seconds);
      (samples.get(c.id) ?? samples.set(c.id, []).get(c.id)!).push(s);
      log(`  round ${round + 1}/${rounds} ${c.id.padEnd(20)} ${Math.round(s.rps).toString().padStart(7)} req/s  cpu ${s.cpuUs.toFixed(1)} µs/req${s.errors || s.non2xx ? `  errors ${s.errors} non-2xx ${s.non2xx}` : ''}`);
    }
  }
  await stop(lacquer.child);
  if (ng) await stop(ng.child);
  await stopAll();
} catch (e) {
  console.error(`bench --tls failed: ${(e as Error).stack ?? e}`);
  await stopAll();
  clearTimeout(deadline);
  process.exit(1);
}
clearTimeout(deadline);

const med = (id: string) => {
  const xs = samples.get(id);
  return xs ? { rps: median(xs.map((x) => x.rps)), cpu: median(xs.map((x) => x.cpuUs)), mean: median(xs.map((x) => x.p50Ms)), errors: xs.reduce((a, x) => a + x.errors + x.non2xx, 0) } : undefined;
};
const k = (n: number | undefined) => (n === undefined || !Number.isFinite(n) ? '—' : n >= 1000 ? `${(n / 1000).toFixed(1)}k` : n.toFixed(0));
const out: string[] = [];
out.push(`${new Date().toISOString()}; Node ${process.version}; wrk -t2 -c${connections}; h2load -t2 -c${connections} -m${streams}; ${nginx ? `nginx ${nginx} (same certificate, ssl http2, proxy_cache, gzip on)` : 'nginx not installed'}; ${rounds} round(s) × ${seconds} s, medians.`);
out.push('');
out.push('| workload | Lacquer req/s | Lacquer CPU µs/req | nginx req/s | nginx CPU µs/req | req/s Lacquer/nginx | CPU Lacquer/nginx |');
out.push('|---|---:|---:|---:|---:|---:|---:|');
for (const c of COLUMNS.filter((x) => x.server === 'lacquer')) {
  const l = med(c.id);
  const n = med(c.id.replace(/^l-/, 'n-'));
  out.push(`| ${c.label} | ${k(l?.rps)} | ${l?.cpu.toFixed(1) ?? '—'} | ${k(n?.rps)} | ${n?.cpu.toFixed(1) ?? '—'} | ${l && n ? (l.rps / n.rps).toFixed(2) : '—'} | ${l && n ? (l.cpu / n.cpu).toFixed(2) : '—'} |`);
}
const ratio = (a: string, b: string, what: 'rps' | 'cpu') => {
  const x = med(a);
  const y = med(b);
  return x && y ? (x[what] / y[what]).toFixed(2) : '—';
};
out.push('');
out.push('| ratio (same run) | value |');
out.push('|---|---:|');
out.push(`| TLS cost: HTTP/1.1 TLS / plain, 1 KiB hit, req/s | ${ratio('l-h1-1k', 'l-h1-plain-1k', 'rps')} |`);
out.push(`| HTTP/2 / HTTP/1.1 over TLS, 1 KiB hit, req/s | ${ratio('l-h2-1k', 'l-h1-1k', 'rps')} |`);
out.push(`| stored br / identity, 100 KiB h2 hit, CPU per request | ${ratio('l-h2-100k-br', 'l-h2-100k', 'cpu')} |`);
out.push(`| stored gzip / identity, 100 KiB h2 hit, CPU per request | ${ratio('l-h2-100k-gzip', 'l-h2-100k', 'cpu')} |`);
out.push(`| gzip per response / identity, 100 KiB h2 pass, CPU per request | ${ratio('l-h2-pass100k-gzip', 'l-h2-pass100k', 'cpu')} |`);
if (nginx) out.push(`| nginx gzip per response / Lacquer stored gzip, 100 KiB h2 hit, CPU per request | ${ratio('n-h2-100k-gzip', 'l-h2-100k-gzip', 'cpu')} |`);
const errors = [...samples.keys()].reduce((a, id) => a + (med(id)?.errors ?? 0), 0);
if (errors) out.push('', `errors or non-2xx answers over all columns: ${errors}`);
console.log(out.join('\n'));

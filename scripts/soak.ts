// `npm run soak [-- --minutes 10 --rate 300 --concurrency 16 --memory 64MiB --json FILE]`: a long run of mixed
// traffic with cache churn against a real `lacquer serve` process, reporting its RSS over time (issue 11 item
// 21). Not part of `npm test`: it takes ten minutes by default and its figure is a trend, not a pass/fail.
//
// The traffic, all through the proxy to an origin in this process whose answers follow from the path:
//   /c/N   cacheable (max-age 60s), 1-64 KiB by N, ETag: a keyspace several times `cache.memory` → evictions
//   /s/N   max-age=1 with ETag: expiry, stale-while-revalidate, conditional revalidation (304)
//   /v/N   Vary: Accept-Language, three variants
//   /p/N   no-store: passed, never stored
//   /e/N   503 one time in eight, otherwise cacheable: stale-if-error and explained errors
//   /w/N   slow first byte (20-120 ms): coalescing and in-flight pressure
//   POST /api   a 2 KiB body to an uncacheable endpoint
// and every few seconds a purge (a prefix ban, a soft purge, a tag purge) through the admin API.
// RSS is read from /proc/PID/status of the proxy process; cache and request figures from /api/stats.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Agent, request } from 'undici';

const { values: opt } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    rate: { type: 'string', default: '300' },
    concurrency: { type: 'string', default: '16' },
    memory: { type: 'string', default: '64MiB' },
    json: { type: 'string' },
  },
});
const MINUTES = Number(opt.minutes);
const RATE = Number(opt.rate);
const CONCURRENCY = Number(opt.concurrency);
if (!(MINUTES > 0) || !(RATE > 0) || !(CONCURRENCY > 0)) {
  process.stderr.write('usage: npm run soak -- [--minutes 10] [--rate 300] [--concurrency 16] [--memory 64MiB] [--json FILE]\n');
  process.exit(2);
}
const DURATION_MS = MINUTES * 60_000;
/** A sample every ~1/30 of the run, at least every 2 s. */
const SAMPLE_MS = Math.max(2000, Math.round(DURATION_MS / 30));
const MAIN = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));
const TOKEN = `soak-${createHash('sha256').update(String(process.pid)).digest('hex').slice(0, 24)}`;

// ── The origin ──────────────────────────────────────────────────────────────────────────────────────
const BLOCK = Buffer.alloc(64 * 1024, 'lacquer soak body ');
let originRequests = 0;
function origin(req: IncomingMessage, res: ServerResponse): void {
  originRequests++;
  const [, kind = '', id = '0'] = (req.url ?? '/').split('?')[0]!.split('/');
  const n = Number.parseInt(id, 10) || 0;
  const etag = `"${kind}-${n}"`;
  const send = (status: number, headers: Record<string, string>, size: number) => {
    res.writeHead(status, { 'content-type': 'text/plain', 'content-length': String(size), ...headers });
    res.end(BLOCK.subarray(0, size));
  };
  req.resume();
  if (req.method === 'POST') return void req.on('end', () => send(200, { 'cache-control': 'no-store' }, 256));
  if (req.headers['if-none-match'] === etag && (kind === 'c' || kind === 's')) {
    res.writeHead(304, { etag, 'cache-control': kind === 's' ? 'max-age=1, stale-while-revalidate=5' : 'max-age=60' });
    return void res.end();
  }
  const size = 1024 * (1 + (n % 64));
  switch (kind) {
    case 'c':
      return send(200, { 'cache-control': 'max-age=60', etag, 'surrogate-key': `k${n % 50}` }, size);
    case 's':
      return send(200, { 'cache-control': 'max-age=1, stale-while-revalidate=5', etag }, size);
    case 'v':
      return send(200, { 'cache-control': 'max-age=30', vary: 'Accept-Language', 'content-language': String(req.headers['accept-language']) }, 2048);
    case 'p':
      return send(200, { 'cache-control': 'no-store' }, 4096);
    case 'e':
      if (Math.random() < 1 / 8) return send(503, { 'cache-control': 'no-store' }, 64);
      return send(200, { 'cache-control': 'max-age=2, stale-if-error=300' }, 4096);
    case 'w':
      return void setTimeout(() => send(200, { 'cache-control': 'max-age=5' }, 8192), 20 + (n % 100));
    default:
      return send(404, { 'cache-control': 'no-store' }, 16);
  }
}

// ── The traffic mix ─────────────────────────────────────────────────────────────────────────────────
type Req = { path: string; method?: 'GET' | 'POST'; headers?: Record<string, string>; body?: string };
const LANGS = ['en', 'de', 'fr'];
const POST_BODY = 'x'.repeat(2048);
function next(): Req {
  const r = Math.random();
  // Skewed keys: a hot set that stays cached and a long tail that churns the LRU.
  const key = (span: number) => (Math.random() < 0.6 ? Math.floor(Math.random() * 200) : Math.floor(Math.random() * span));
  if (r < 0.5) return { path: `/c/${key(20_000)}` };
  if (r < 0.62) return { path: `/s/${key(2000)}` };
  if (r < 0.7) return { path: `/v/${key(500)}`, headers: { 'accept-language': LANGS[Math.floor(Math.random() * 3)]! } };
  if (r < 0.8) return { path: `/p/${key(1000)}` };
  if (r < 0.88) return { path: `/e/${key(300)}` };
  if (r < 0.96) return { path: `/w/${key(100)}` };
  return { path: '/api', method: 'POST', body: POST_BODY };
}

// ── Helpers ─────────────────────────────────────────────────────────────────────────────────────────
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const mib = (b: number) => Math.round((b / 1024 / 1024) * 10) / 10;

function rssOf(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

type Stats = { requests: { total: number }; hit_ratio: number | null; cache: { bytes: number; objects: number; evictions: number }; process: { rss_bytes: number } };

async function startProxy(dir: string, originUrl: string): Promise<{ child: ChildProcess; url: string; admin: string }> {
  const cfg = join(dir, 'soak.yaml');
  writeFileSync(
    cfg,
    [
      'listen: 127.0.0.1:0',
      `admin:\n  listen: 127.0.0.1:0\n  token: ${TOKEN}`,
      `cache:\n  memory: ${opt.memory}`,
      'log:\n  access: stdout',
      'retries:\n  on_status: [503]',
      `backends:\n  - name: origin\n    url: ${originUrl}`,
      '',
    ].join('\n'),
  );
  // Access lines go to /dev/null: the logging path runs, the disk does not fill.
  const child = spawn(process.execPath, [MAIN, 'serve', '-c', cfg], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (c: Buffer) => (err += c.toString('utf8')));
  for (let i = 0; i < 200; i++) {
    const m = /"listen":"([^"]+)","admin":"([^"]+)"/.exec(err);
    if (m) {
      child.stderr!.removeAllListeners('data');
      child.stderr!.resume();
      return { child, url: `http://${m[1]}`, admin: m[2]! };
    }
    if (child.exitCode !== null) break;
    await sleep(50);
  }
  child.kill('SIGKILL');
  throw new Error(`lacquer serve did not start: ${err.slice(0, 2000)}`);
}

// ── The run ─────────────────────────────────────────────────────────────────────────────────────────
const dir = mkdtempSync(join(tmpdir(), 'lacquer-soak-'));
const server = createServer({ keepAliveTimeout: 10_000 }, origin);
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
const originUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
let proxy: Awaited<ReturnType<typeof startProxy>> | undefined;
const agent = new Agent({ connections: CONCURRENCY, keepAliveTimeout: 5000 });
const admin = (path: string, body?: unknown) =>
  request(`${proxy!.admin}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  }).then((r) => r.body.json() as Promise<unknown>);

const byStatus: Record<string, number> = {};
let sent = 0;
let transportErrors = 0;
let purges = 0;
const samples: { at_s: number; rss_mib: number; requests: number; req_per_s: number; hit_ratio: number | null; cache_mib: number; objects: number; evictions: number }[] = [];
let died = false;
let stopping = false;

try {
  proxy = await startProxy(dir, originUrl);
  proxy.child.on('exit', () => (died = !stopping));
  process.stderr.write(`soak: ${MINUTES} min at ~${RATE} req/s (${CONCURRENCY} connections), cache.memory ${opt.memory}; proxy pid ${proxy.child.pid}, ${proxy.url}\n`);
  const started = Date.now();
  const end = started + DURATION_MS;
  const perWorkerGapMs = (1000 * CONCURRENCY) / RATE;

  const worker = async () => {
    while (Date.now() < end && !died) {
      const t0 = Date.now();
      const q = next();
      try {
        const r = await request(`${proxy!.url}${q.path}`, { method: q.method ?? 'GET', headers: q.headers, body: q.body, dispatcher: agent });
        await r.body.dump();
        byStatus[r.statusCode] = (byStatus[r.statusCode] ?? 0) + 1;
      } catch {
        transportErrors++;
      }
      sent++;
      const wait = perWorkerGapMs - (Date.now() - t0);
      if (wait > 0) await sleep(wait);
    }
  };

  const purger = async () => {
    const kinds = [{ prefix: '/c/1' }, { prefix: '/s/', soft: true }, { tags: ['k7', 'k8'] }];
    while (Date.now() < end && !died) {
      await sleep(5000);
      await admin('/api/purge', kinds[purges % kinds.length]).catch(() => undefined);
      purges++;
    }
  };

  const sampler = async () => {
    let lastRequests = 0;
    let lastAt = started;
    for (let k = 1; !died; k++) {
      const at = Math.min(started + k * SAMPLE_MS, end);
      await sleep(at - Date.now());
      const now = Date.now();
      const s = (await admin('/api/stats').catch(() => undefined)) as Stats | undefined;
      const rss = rssOf(proxy!.child.pid!) ?? s?.process.rss_bytes ?? 0;
      const total = s?.requests.total ?? 0;
      const sample = {
        at_s: Math.round((now - started) / 1000),
        rss_mib: mib(rss),
        requests: total,
        req_per_s: Math.round((total - lastRequests) / ((now - lastAt) / 1000)),
        hit_ratio: s?.hit_ratio ?? null,
        cache_mib: mib(s?.cache.bytes ?? 0),
        objects: s?.cache.objects ?? 0,
        evictions: s?.cache.evictions ?? 0,
      };
      samples.push(sample);
      lastRequests = total;
      lastAt = now;
      process.stderr.write(
        `${String(sample.at_s).padStart(5)}s  rss ${String(sample.rss_mib).padStart(6)} MiB  ${String(sample.req_per_s).padStart(5)} req/s  hit ${sample.hit_ratio ?? '-'}  cache ${sample.cache_mib} MiB / ${sample.objects} objects  evictions ${sample.evictions}\n`,
      );
      if (at >= end) return;
    }
  };

  await Promise.all([...Array.from({ length: CONCURRENCY }, worker), purger(), sampler()]);
} finally {
  const child = proxy?.child;
  stopping = true;
  if (child && child.exitCode === null) {
    child.kill('SIGTERM');
    await new Promise((r) => {
      const t = setTimeout(() => {
        child.kill('SIGKILL');
        r(undefined);
      }, 15_000);
      child.once('exit', () => {
        clearTimeout(t);
        r(undefined);
      });
    });
  }
  await agent.close();
  await new Promise((r) => server.close(r));
  server.closeAllConnections();
  rmSync(dir, { recursive: true, force: true });
}

// ── The report ──────────────────────────────────────────────────────────────────────────────────────
// Warm-up ends when the cache is full (the first evictions) and a fifth of the run has passed: RSS grows while the
// cache fills, by design; what matters is growth after that, when every new object evicts an old one.
const warm = samples.find((s) => s.evictions > 0 && s.at_s >= (DURATION_MS / 1000) * 0.2) ?? samples.find((s) => s.at_s >= (DURATION_MS / 1000) * 0.2) ?? samples[0];
const last = samples.at(-1);
const max = Math.max(...samples.map((s) => s.rss_mib));
const summary = {
  minutes: MINUTES,
  requests_sent: sent,
  by_status: byStatus,
  transport_errors: transportErrors,
  origin_requests: originRequests,
  purges,
  proxy_died: died,
  rss_mib: { after_warmup: warm?.rss_mib, end: last?.rss_mib, max, growth_after_warmup: warm && last ? Math.round((last.rss_mib - warm.rss_mib) * 10) / 10 : null },
  samples,
};
process.stdout.write(
  [
    '',
    `requests ${sent} (${Object.entries(byStatus).map(([k, v]) => `${k}: ${v}`).join(', ')}), transport errors ${transportErrors}, origin requests ${originRequests}, purges ${purges}`,
    `RSS: ${summary.rss_mib.after_warmup} MiB after warm-up (${warm?.at_s}s), ${summary.rss_mib.end} MiB at the end, max ${max} MiB; growth after warm-up ${summary.rss_mib.growth_after_warmup} MiB`,
    '',
  ].join('\n'),
);
if (opt.json) writeFileSync(opt.json, `${JSON.stringify(summary, null, 2)}\n`);
process.exit(summary.proxy_died ? 1 : 0);

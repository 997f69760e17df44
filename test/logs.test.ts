// `lacquer logs`: the three formats, the aggregation (5xx per minute, bursts, top lists, hints), the
// command over files, .gz and stdin, and memory that stays bounded on a log many times larger than the heap.
import { spawn } from 'node:child_process';
import { createWriteStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { analyse } from '../src/cli/logs.ts';
import { HINTS } from '../src/errors.ts';
import { Aggregator, MAX_BUCKETS, type Analysis } from '../src/logs/aggregate.ts';
import { parseLine } from '../src/logs/detect.ts';
import { sparkline } from '../src/logs/format.ts';
import { BoundedCounter } from '../src/logs/top.ts';

const node = join(process.cwd(), 'node_modules/.bin/node');
const cli = join(process.cwd(), 'src/cli/main.ts');
const T0 = Date.parse('2026-03-01T10:00:00Z');
const MIN = 60_000;

let dir = '';
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'lacquer-logs-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// ---- generators: the line shapes each proxy writes -------------------------------------------

type Err = { class: string; backend?: string };
function lacquer(t: number, o: { status?: number; url?: string; backend?: string; error?: Err; served?: string; attempts?: { backend: string }[] } = {}): string {
  return JSON.stringify({
    level: 'info', time: new Date(t).toISOString(), type: 'access', id: `r${t}`, method: 'GET', host: 'shop.test', url: o.url ?? '/', status: o.status ?? 200,
    cache: 'lacquer; fwd=uri-miss', served: o.served ?? (o.error ? 'synth' : 'origin'), bytes: 10, ms: 2, backend: o.backend, attempts: o.attempts,
    error: o.error ? { class: o.error.class, phase: 'connect', code: 'X', backend: o.error.backend, hint: 'h', url: o.url } : undefined,
  });
}
const background = (t: number, cls: string, url: string, backend: string) =>
  JSON.stringify({ level: 'warn', time: new Date(t).toISOString(), type: 'background', error: { class: cls, url, backend }, msg: `background refresh of ${url} failed` });

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
/** `%t` in the given zone offset (minutes east of UTC). */
function ncsaTime(t: number, offsetMin = 0): string {
  const d = new Date(t + offsetMin * MIN);
  const p = (v: number) => String(v).padStart(2, '0');
  const sign = offsetMin < 0 ? '-' : '+';
  const off = Math.abs(offsetMin);
  return `${p(d.getUTCDate())}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} ${sign}${p(Math.floor(off / 60))}${p(off % 60)}`;
}
/** varnishncsa default: %h %l %u %t "%r" %s %b "%{Referer}i" "%{User-agent}i", %r with the absolute URL. */
const varnish = (t: number, status: number, path: string, offsetMin = 0) =>
  `192.0.2.7 - - [${ncsaTime(t, offsetMin)}] "GET http://shop.test${path} HTTP/1.1" ${status} 5120 "-" "curl/8.5.0"`;
/** nginx combined: $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent". */
const nginx = (t: number, status: number, path: string, offsetMin = 0) =>
  `198.51.100.4 - alice [${ncsaTime(t, offsetMin)}] "GET ${path} HTTP/1.1" ${status} 612 "https://shop.test/" "Mozilla/5.0 (X11; Linux x86_64) \\"quoted\\""`;

async function analyseLines(lines: string[], o = { top: 10, burstThreshold: 5 }): Promise<Analysis> {
  const agg = new Aggregator();
  await analyse(Readable.from(lines.map((l) => `${l}\n`)), agg);
  return agg.result(o);
}

function run(args: string[], stdin?: string, nodeArgs: string[] = []): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const p = spawn(node, [...nodeArgs, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (c: Buffer) => (out += c));
    p.stderr.on('data', (c: Buffer) => (err += c));
    p.on('close', (code) => resolve({ code, out, err }));
    p.stdin.end(stdin ?? '');
  });
}

// ---- parsing ---------------------------------------------------------------------------------

describe('line formats', () => {
  it('reads a Lacquer access line: class, backend, path without query, stale cover', () => {
    const r = parseLine(lacquer(T0, { status: 200, url: '/p?x=1', served: 'stale', error: { class: 'http_response_timeout', backend: 'app2' } }));
    expect(r).toEqual({ format: 'lacquer', time: T0, kind: 'request', status: 200, failure: 'http_response_timeout', backend: 'app2', path: '/p', servedStale: true });
    // No error backend: the last attempt names it; an origin 503 without error is `status 503`.
    const o = parseLine(lacquer(T0, { status: 503, attempts: [{ backend: 'a' }, { backend: 'b' }] }));
    expect(o).toMatchObject({ failure: 'status 503', backend: 'b', servedStale: false });
    expect(parseLine(background(T0, 'connection_refused', '/q?y', 'app3'))).toMatchObject({ kind: 'background', failure: 'connection_refused', path: '/q', backend: 'app3' });
    // Lacquer's operational lines are recognised but are not requests.
    expect(parseLine(JSON.stringify({ level: 'info', time: new Date(T0).toISOString(), msg: 'listening' }))).toBeNull();
  });

  it('tells varnishncsa from nginx combined by the request line, and reads %t with its zone offset', () => {
    const v = parseLine(varnish(T0, 503, '/cart?id=9', -420));
    expect(v).toEqual({ format: 'varnishncsa', time: T0, kind: 'request', status: 503, failure: 'status 503', path: '/cart' });
    const n = parseLine(nginx(T0, 504, '/api', 120));
    expect(n).toEqual({ format: 'nginx', time: T0, kind: 'request', status: 504, failure: 'status 504', path: '/api' });
    expect(parseLine(nginx(T0, 200, '/'))).toMatchObject({ failure: undefined });
    // Common log format (no referer / user agent) too.
    expect(parseLine(`10.0.0.1 - - [${ncsaTime(T0)}] "GET /x HTTP/1.0" 500 -`)).toMatchObject({ format: 'nginx', status: 500 });
    expect(parseLine('this is not a log line')).toBeUndefined();
    expect(parseLine('{"broken json')).toBeUndefined();
  });
});

// ---- aggregation -----------------------------------------------------------------------------

describe('analysis', () => {
  it('finds the burst, ranks classes, backends and paths, and gives each class its hint (Lacquer log)', async () => {
    const lines: string[] = [];
    for (let m = 0; m < 30; m++) {
      for (let i = 0; i < 10; i++) lines.push(lacquer(T0 + m * MIN + i * 1000, { url: `/ok/${i}`, backend: 'app1' }));
      if (m >= 10 && m < 15) for (let i = 0; i < 20; i++) lines.push(lacquer(T0 + m * MIN + 30_000 + i, { status: 503, url: '/api/cart?id=1', error: { class: 'connection_refused', backend: 'app2' } }));
    }
    for (let i = 0; i < 3; i++) lines.push(lacquer(T0 + 20 * MIN + i, { status: 502, url: '/legacy', backend: 'app3' }));
    for (let i = 0; i < 4; i++) lines.push(lacquer(T0 + 22 * MIN + i, { status: 200, url: '/slow', served: 'stale', error: { class: 'http_response_timeout', backend: 'app1' } }));
    lines.push(background(T0 + 23 * MIN, 'http_response_timeout', '/slow', 'app1'), background(T0 + 24 * MIN, 'http_response_timeout', '/slow', 'app1'));
    lines.push('garbage line', JSON.stringify({ level: 'info', time: new Date(T0).toISOString(), msg: 'started' }));

    const a = await analyseLines(lines);
    expect(a.formats).toEqual({ lacquer: 300 + 100 + 3 + 4 + 2, varnishncsa: 0, nginx: 0 });
    expect([a.unrecognised, a.ignored]).toEqual([1, 1]);
    expect(a.requests).toBe(300 + 100 + 3 + 4);
    expect(a.status5xx).toBe(103);
    expect([a.staleServed, a.backgroundFailures]).toEqual([4, 2]);
    expect(a.series).toHaveLength(30);
    expect(a.series[10]).toEqual({ start: new Date(T0 + 10 * MIN).toISOString(), requests: 30, s5xx: 20 });
    expect(a.bursts).toEqual([
      { start: new Date(T0 + 10 * MIN).toISOString(), end: new Date(T0 + 15 * MIN).toISOString(), minutes: 5, requests: 150, s5xx: 100, topFailure: 'connection_refused' },
    ]);
    expect(a.failures.map((f) => [f.key, f.count])).toEqual([['connection_refused', 100], ['http_response_timeout', 6], ['status 502', 3]]);
    expect(a.failures[0]!.hint).toBe(HINTS.connection_refused);
    expect(a.failures[1]!.hint).toBe(HINTS.http_response_timeout);
    expect(a.failures[2]!.hint).toMatch(/^The origin answered 502 itself \(Proxy-Status received-status\)/);
    expect(a.backends).toEqual([{ key: 'app2', count: 100 }, { key: 'app1', count: 6 }, { key: 'app3', count: 3 }]);
    expect(a.paths[0]).toEqual({ key: '/api/cart', count: 100 });
    expect(a.approximate).toEqual({ backends: 0, paths: 0 });

    // A higher threshold: no burst; a lower one also catches the three 502s at minute 20.
    expect((await analyseLines(lines, { top: 10, burstThreshold: 21 })).bursts).toEqual([]);
    expect((await analyseLines(lines, { top: 10, burstThreshold: 3 })).bursts.map((b) => b.topFailure)).toEqual(['connection_refused', 'status 502']);
  });

  it('analyses varnishncsa and nginx logs status-only, merging zones into UTC minutes', async () => {
    const lines: string[] = [];
    for (let m = 0; m < 6; m++) {
      for (let i = 0; i < 5; i++) lines.push(varnish(T0 + m * MIN + i, 200, `/v/${i}`, -420));
      for (let i = 0; i < 5; i++) lines.push(nginx(T0 + m * MIN + i, 200, `/n/${i}`, 60));
    }
    // Minutes 2-3: Varnish (UTC-7) answers 503s, nginx (UTC+1) 504s in the same UTC minutes.
    for (const m of [2, 3]) {
      for (let i = 0; i < 4; i++) lines.push(varnish(T0 + m * MIN + 100 + i, 503, '/checkout', -420));
      for (let i = 0; i < 3; i++) lines.push(nginx(T0 + m * MIN + 100 + i, 504, '/search?q=x', 60));
    }
    const a = await analyseLines(lines);
    expect(a.formats).toEqual({ lacquer: 0, varnishncsa: 38, nginx: 36 });
    expect(a.series.map((s) => s.s5xx)).toEqual([0, 0, 7, 7, 0, 0]);
    expect(a.bursts).toHaveLength(1);
    expect(a.bursts[0]).toMatchObject({ start: new Date(T0 + 2 * MIN).toISOString(), minutes: 2, s5xx: 14, topFailure: 'status 503' });
    expect(a.failures.map((f) => f.key)).toEqual(['status 503', 'status 504']);
    expect(a.failures[0]!.hint).toMatch(/^Varnish answers 503 itself for any failed backend fetch/);
    expect(a.failures[1]!.hint).toMatch(/^nginx answers 504 when the upstream did not answer in time/);
    expect(a.backends).toEqual([]);
    expect(a.paths).toEqual([{ key: '/checkout', count: 8 }, { key: '/search', count: 6 }]);
  });

  it('widens buckets instead of growing without bound when a log spans more minutes than MAX_BUCKETS', async () => {
    const agg = new Aggregator();
    const n = MAX_BUCKETS + 5000;
    for (let m = 0; m < n; m++) agg.add({ format: 'nginx', time: T0 + m * MIN, kind: 'request', status: m % 2 ? 500 : 200, failure: m % 2 ? 'status 500' : undefined });
    const a = agg.result({ top: 5, burstThreshold: 1 });
    expect(a.bucketMinutes).toBe(2);
    expect(a.series.length).toBeLessThanOrEqual(MAX_BUCKETS);
    expect(a.series.reduce((s, b) => s + b.requests, 0)).toBe(n);
    expect(a.series.reduce((s, b) => s + b.s5xx, 0)).toBe(Math.floor(n / 2));
    // One 5xx per 2-minute bucket is 0.5 per minute: under a threshold of 1 per minute.
    expect(a.bursts).toEqual([]);
  });

  it('keeps the heavy hitters and says how approximate a pruned top list is', () => {
    const c = new BoundedCounter(100);
    for (let i = 0; i < 50; i++) c.add(`/k${i}`, 3);
    expect(c.maxDropped).toBe(0);
    expect(c.top(1)).toEqual([{ key: '/k0', count: 3 }]);
    for (let i = 0; i < 100_000; i++) {
      c.add(`/unique/${i}`);
      if (i % 100 === 0) c.add('/hot');
    }
    expect(c.size).toBeLessThanOrEqual(200);
    expect(c.top(1)[0]!.key).toBe('/hot');
    expect(c.top(1)[0]!.count).toBeGreaterThanOrEqual(1000 - c.maxDropped);
    expect(c.maxDropped).toBeGreaterThan(0);
  });

  it('draws a sparkline: blank for none, eight levels up to the peak', () => {
    expect(sparkline([0, 1, 4, 8])).toBe(' ▁▄█');
  });
});

// ---- the command -----------------------------------------------------------------------------

describe('lacquer logs (the command)', () => {
  it('reads files of all three formats (one gzipped) with --json, and stdin in human form', async () => {
    const lq: string[] = [];
    for (let m = 0; m < 5; m++) {
      lq.push(lacquer(T0 + m * MIN, { url: '/' }));
      if (m === 1 || m === 2) for (let i = 0; i < 6; i++) lq.push(lacquer(T0 + m * MIN + i, { status: 503, url: '/x', error: { class: 'http_response_header_section_size', backend: 'app1' } }));
    }
    const fLq = join(dir, 'lacquer.log');
    writeFileSync(fLq, `${lq.join('\n')}\n`);
    const fV = join(dir, 'varnish.log.gz');
    writeFileSync(fV, gzipSync(`${varnish(T0, 503, '/v')}\n${varnish(T0 + MIN, 200, '/v')}\n`));
    const fN = join(dir, 'nginx.log');
    writeFileSync(fN, `${nginx(T0, 502, '/n')}\n${lacquer(T0, { status: 503, url: '/o' })}\n`);

    const j = await run([cli, 'logs', fLq, fV, fN, '--json']);
    expect(j.code).toBe(0);
    const a = JSON.parse(j.out) as Analysis;
    expect(a.formats).toEqual({ lacquer: 18, varnishncsa: 2, nginx: 1 });
    expect(a.failures.map((f) => [f.key, f.count])).toEqual([['http_response_header_section_size', 12], ['status 503', 2], ['status 502', 1]]);
    // The same status from two proxies: a hint for each.
    expect(a.failures.find((f) => f.key === 'status 503')!.hint).toMatch(/^\[lacquer\] The origin answered 503 itself .* \[varnishncsa\] Varnish answers 503 itself/);

    const h = await run([cli, 'logs'], `${lq.join('\n')}\n`);
    expect(h.code).toBe(0);
    expect(h.out).toMatch(/^17 lines: 17 lacquer$/m);
    expect(h.out).toMatch(/^2026-03-01 10:00 → 2026-03-01 10:04 UTC: 17 requests, 12 5xx \(70\.6%\)$/m);
    expect(h.out).toMatch(/^ {2}\| ██ {2}\|$/m);
    expect(h.out).toMatch(/^2026-03-01 10:01 +7 +6 +85\.7% +█+$/m);
    expect(h.out).toMatch(/^ {2}2026-03-01 10:01 → 10:03 \(2 min\): 12 5xx of 14 requests, mostly http_response_header_section_size$/m);
    expect(h.out).toContain(`  http_response_header_section_size: ${HINTS.http_response_header_section_size}`);

    const missing = await run([cli, 'logs', join(dir, 'nope.log')]);
    expect(missing.code).toBe(2);
    expect(missing.err).toMatch(/nope\.log: ENOENT/);
  });

  it('streams a log many times larger than its heap: 128 MiB of lines with over 200 000 distinct failing paths under --max-old-space-size=24', async () => {
    const file = join(dir, 'big.log');
    const out = createWriteStream(file);
    const target = 128 * 1024 * 1024;
    let bytes = 0;
    let lines = 0;
    let s5xx = 0;
    let stale = 0;
    const t0 = performance.now();
    while (bytes < target) {
      let chunk = '';
      for (let k = 0; k < 5000; k++, lines++) {
        const t = T0 + Math.floor(lines / 50) * 1000; // 50 lines a second
        const bad = Math.floor(lines / 3000) % 20 === 7 && lines % 2 === 0; // a burst every 20 minutes
        if (bad) s5xx++;
        else if (lines % 3 === 0) stale++;
        const path = `/p/${lines}`; // every path distinct: the worst case for the top lists
        const f = lines % 3;
        // Every Lacquer line is a failure (a stale copy covers the others), so over 200 000 distinct failing paths.
        const lq = bad
          ? { status: 503, url: path, error: { class: 'connection_refused', backend: 'app2' } }
          : { url: path, served: 'stale', error: { class: 'http_response_timeout', backend: `app${lines % 7}` } };
        chunk += `${f === 0 ? lacquer(t, lq) : f === 1 ? varnish(t, bad ? 503 : 200, path) : nginx(t, bad ? 503 : 200, path)}\n`;
      }
      bytes += Buffer.byteLength(chunk);
      if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
    }
    await new Promise<void>((r) => out.end(r));
    const genMs = performance.now() - t0;
    // The analysis as the command runs it (src/cli/logs.ts), in a child whose heap limit is a fifth of the file.
    const entry = join(dir, 'entry.ts');
    writeFileSync(entry, `import { logsCommand } from ${JSON.stringify(join(process.cwd(), 'src/cli/logs.ts'))};\nprocess.exitCode = await logsCommand(process.argv.slice(2), { json: true });\n`);
    const t1 = performance.now();
    const r = await run([entry, file], undefined, ['--max-old-space-size=24']);
    const runMs = performance.now() - t1;
    console.log(`logs memory test: ${(bytes / 1048576).toFixed(0)} MiB, ${lines} lines generated in ${genMs.toFixed(0)} ms, analysed under a 24 MB heap in ${runMs.toFixed(0)} ms`);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const a = JSON.parse(r.out) as Analysis;
    expect(a.lines).toBe(lines);
    expect(a.requests).toBe(lines);
    expect(a.status5xx).toBe(s5xx);
    expect(a.formats.lacquer + a.formats.varnishncsa + a.formats.nginx).toBe(lines);
    expect(a.paths).toHaveLength(10);
    expect(a.approximate.paths).toBeGreaterThan(0); // the path list was pruned, not kept whole
    expect(a.bursts.length).toBeGreaterThan(5);
    expect(a.failures.map((f) => f.key).sort()).toEqual(['connection_refused', 'http_response_timeout', 'status 503']);
    expect(a.staleServed).toBe(stale);
    expect(stale).toBeGreaterThan(200_000);
  }, 60_000);
});

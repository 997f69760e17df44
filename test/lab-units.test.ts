// The lab's pure parts: Proxy-Status classes, the summary and timeline, goals, target parsing, and the
// generated proxy configs (Lacquer's validated by its own schema; VCL and nginx.conf by varnishd -C and
// nginx -t when they are installed).
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { validateConfig } from '../src/config/load.ts';
import { judge } from '../src/lab/goals.ts';
import { percentile, perSecond, summarize } from '../src/lab/metrics.ts';
import { planEndMs, proxyStatusClass, type Sample } from '../src/lab/plan.ts';
import { which } from '../src/lab/processes.ts';
import { LAUNCHERS, parseTargets } from '../src/lab/proxies/index.ts';
import type { LaunchInput } from '../src/lab/proxies/types.ts';
import { sparkline } from '../src/lab/report-markdown.ts';
import type { RunResult } from '../src/lab/runner.ts';
import { SCENARIOS } from '../src/lab/scenarios/index.ts';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tmp(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'lacquer-lab-unit-'));
  chmodSync(d, 0o755);
  dirs.push(d);
  return d;
}

const sample = (t: number, s: number, ms: number, extra: Partial<Sample> = {}): Sample => ({ t, ph: 'x', p: '/', s, c: '', ms, v: s === 200 ? 'ok' : 'none', ...extra });

describe('Proxy-Status class', () => {
  it('takes the error type of the first member, or received-status', () => {
    expect(proxyStatusClass('lacquer; error=http_response_timeout; next-hop="app2"; details="x"')).toBe('http_response_timeout');
    expect(proxyStatusClass('lacquer; received-status=503; next-hop="app1"')).toBe('received-status');
    expect(proxyStatusClass('lacquer; error=connection_refused, upstream; error=dns_error')).toBe('connection_refused');
    expect(proxyStatusClass(undefined)).toBe('');
    expect(proxyStatusClass('lacquer')).toBe('other');
  });
});

describe('summary', () => {
  it('counts errors by status, class and transport, corrupted bodies, percentiles and a per-second timeline', () => {
    const samples: Sample[] = [
      sample(10, 200, 5),
      sample(20, 200, 15, { c: 'connection_refused' }),
      sample(1100, 503, 100, { c: 'http_response_timeout' }),
      sample(1200, 0, 7, { e: 'body:UND_ERR_SOCKET' }),
      sample(1300, 200, 9, { v: 'bad' }),
      sample(2500, 200, 1, { v: 'none' }),
    ];
    const s = summarize(samples, { faultFromMs: 1000, faultToMs: 2000, endMs: 3000 });
    expect(s.requests).toBe(6);
    expect(s.errors).toBe(2);
    expect(s.faultErrors).toBe(2);
    expect(s.errorsByStatus).toEqual({ 503: 1, 0: 1 });
    expect(s.errorsByClass).toEqual({ http_response_timeout: 1, '(none)': 1 });
    expect(s.errorsByTransport).toEqual({ 'body:UND_ERR_SOCKET': 1 });
    expect(s.degradedByClass).toEqual({ connection_refused: 1 });
    expect(s.corrupted).toBe(1);
    expect(s.unverified).toBe(1);
    expect(s.latency).toEqual({ p50: 7, p99: 100, max: 100 });
    expect(s.timeline.map((t) => [t.requests, t.errors, t.corrupted])).toEqual([[2, 0, 0], [3, 2, 1], [1, 0, 0]]);
    expect(s.timeline[1]!.max).toBe(100);
  });

  it('nearest-rank percentiles', () => {
    const xs = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(xs, 0.5)).toBe(50);
    expect(percentile(xs, 0.99)).toBe(99);
    expect(percentile([], 0.5)).toBe(0);
  });

  it('origin requests per second from cumulative points', () => {
    expect(perSecond([{ t: 250, total: 5 }, { t: 1000, total: 10 }, { t: 1500, total: 12 }, { t: 3000, total: 30 }], 3)).toEqual([10, 2, 18]);
  });

  it('sparklines scale to the max and show zero as a dot', () => {
    expect(sparkline([0, 1, 8])).toBe('·▁█');
  });
});

describe('scenarios', () => {
  it('all twelve, bounded: full ≤ 60 s, short ≤ 10 s, faults inside the run, load phases inside the run', () => {
    expect(SCENARIOS.map((s) => s.name)).toEqual([
      'origin-down-warm', 'node-dies', 'slow-origin', 'keepalive-race', 'thundering-herd', 'overload', 'capacity-limited', 'flaky-5xx', 'mid-body-reset',
      'rolling-restart', 'black-hole', 'sole-backend-partial-failure',
    ]);
    for (const s of SCENARIOS) {
      for (const short of [false, true]) {
        const spec = s.build(short);
        expect(spec.endMs, spec.name).toBeLessThanOrEqual(short ? 10_000 : 60_000);
        expect(spec.faultFromMs).toBeLessThan(spec.faultToMs);
        expect(spec.faultToMs).toBeLessThanOrEqual(spec.endMs);
        expect(planEndMs({ phases: spec.load })).toBeLessThanOrEqual(spec.endMs);
        for (const a of spec.actions) for (const i of a.origins) expect(i).toBeLessThan(spec.origins.count);
      }
    }
  });
});

describe('targets and goals', () => {
  it('parses proxy lists', () => {
    expect(parseTargets('all').map((t) => t.id)).toEqual(['lacquer', 'varnish-tuned', 'varnish-default', 'nginx-tuned', 'nginx-default']);
    expect(parseTargets('lacquer,nginx').map((t) => t.id)).toEqual(['lacquer', 'nginx-tuned', 'nginx-default']);
    expect(parseTargets('lacquer-default').map((t) => t.label)).toEqual(['Lacquer (defaults)']);
    expect(() => parseTargets('haproxy')).toThrow(/unknown proxy/);
  });

  it('judges fewer-errors-than-peers against the best tuned peer only', () => {
    const mk = (id: string, kind: 'lacquer' | 'varnish' | 'nginx', variant: 'tuned' | 'default', errors: number) =>
      ({ goal: 'fewer-errors-than-peers', target: { id, kind, variant, label: id }, summary: { errors, corrupted: 0 }, origin: { watched: {} } }) as unknown as RunResult;
    const lq = mk('lacquer', 'lacquer', 'tuned', 3);
    expect(judge(lq, [lq, mk('varnish-tuned', 'varnish', 'tuned', 5), mk('nginx-default', 'nginx', 'default', 0)]).met).toBe(true);
    expect(judge(lq, [lq, mk('nginx-tuned', 'nginx', 'tuned', 3)]).met).toBe(false);
    expect(judge(lq, []).met).toBeUndefined();
  });
});

describe('generated configs', () => {
  const input = (dir: string): LaunchInput => ({
    dir,
    port: 17990,
    backends: [{ name: 'app1', host: '127.0.0.1', port: 17991 }, { name: 'app2', host: '127.0.0.1', port: 17992 }],
    tuning: { connectMs: 1000, firstByteMs: 1500, betweenBytesMs: 3000, originCapacity: 20 },
    healthPath: '/__lab/health',
  });

  it("Lacquer's tuned and default configs pass Lacquer's own schema", () => {
    const dir = tmp();
    for (const v of ['tuned', 'default'] as const) {
      const text = LAUNCHERS.lacquer.config(input(dir), v).text;
      const cfg = validateConfig(parse(text));
      expect(cfg.listen[0]!.address).toBe('127.0.0.1:17990');
      // never the default 6082, which anything else on the machine may hold (issue 11 item 18)
      expect(cfg.admin.listen).toBe('127.0.0.1:0');
      if (v === 'tuned') {
        expect([cfg.cache.stale_if_error, cfg.cache.stale_while_revalidate]).toEqual([3_600_000, 3_600_000]);
        expect(cfg.probes.enabled).toBe(true);
        expect(cfg.retries.on_timeout).toBe(true);
        expect(cfg.backends[0]!.max_connections).toBe(20);
        expect(cfg.timeouts.first_byte).toBe(1500);
      }
    }
  });

  it('Varnish and nginx configs carry the resilience settings (tuned) and none of them (defaults)', () => {
    const dir = tmp();
    const vt = LAUNCHERS.varnish.config(input(dir), 'tuned').text;
    for (const want of ['probe health', '.probe = health;', 'directors.round_robin()', 'return (retry);', 'set beresp.grace = 1h;', 'bereq.is_bgfetch', '.first_byte_timeout = 1.5s;']) expect(vt).toContain(want);
    const vd = LAUNCHERS.varnish.config(input(dir), 'default').text;
    expect(vd).toContain('directors.round_robin()');
    const code = (t: string) => t.split('\n').filter((l) => !l.trim().startsWith('#')).join('\n');
    expect(code(vd)).not.toMatch(/probe|retry|grace/);
    const nt = LAUNCHERS.nginx.config(input(dir), 'tuned').text;
    for (const want of ['proxy_cache_use_stale error timeout updating http_500 http_502 http_503 http_504;', 'proxy_cache_lock on;', 'proxy_cache_background_update on;', 'proxy_next_upstream error timeout http_502 http_503 http_504;', 'max_fails=3 fail_timeout=5s', 'keepalive 32;', 'keys_zone=lab:10m', 'daemon off;', 'proxy_read_timeout 1500ms;']) expect(nt).toContain(want);
    const nd = LAUNCHERS.nginx.config(input(dir), 'default').text;
    expect(nd).toContain('proxy_cache lab;');
    expect(code(nd)).not.toMatch(/use_stale|cache_lock|next_upstream|max_fails|keepalive/);
  });

  it.skipIf(!which('varnishd'))('varnishd compiles both VCLs', () => {
    const dir = tmp();
    for (const v of ['tuned', 'default'] as const) {
      const file = path.join(dir, `v-${v}.vcl`);
      writeFileSync(file, LAUNCHERS.varnish.config(input(dir), v).text);
      const r = spawnSync(which('varnishd')!, ['-C', '-n', path.join(dir, `work-${v}`), '-f', file], { encoding: 'utf8', timeout: 10_000 });
      expect(r.status, r.stderr).toBe(0);
    }
  });

  it.skipIf(!which('nginx'))('nginx -t accepts both configs', () => {
    const dir = tmp();
    mkdirSync(path.join(dir, 'nginx-tmp'));
    for (const v of ['tuned', 'default'] as const) {
      const file = path.join(dir, `n-${v}.conf`);
      writeFileSync(file, LAUNCHERS.nginx.config(input(dir), v).text);
      const r = spawnSync(which('nginx')!, ['-t', '-c', file, '-p', dir, '-e', path.join(dir, 'err.log')], { encoding: 'utf8', timeout: 10_000 });
      expect(r.status, r.stderr).toBe(0);
    }
  });
});

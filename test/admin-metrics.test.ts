// Prometheus metrics after scripted traffic: exact counts for hits, misses, coalesced and stale serves, one
// failure of each class the lab origin can produce, and the gauges read from pools and the store.
import { afterEach, describe, expect, it } from 'vitest';
import { sleep, startHarness, type Harness } from './helpers.ts';
import { admin, scrape, sum, until } from './admin-helpers.ts';

const TOKEN = 'metrics-test-token-0123456789';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

/** Path → the RFC 9209 class its behaviour must produce. */
const FAILURES: Record<string, string> = {
  '/hang': 'http_response_timeout',
  '/garbage': 'http_protocol_error',
  '/huge': 'http_response_header_section_size',
  '/reset': 'connection_terminated',
  '/midbody': 'http_response_incomplete',
  '/stall': 'connection_read_timeout',
};

describe('metrics', () => {
  it('counts hits, misses, coalesced and stale serves, one failure of each class, and reads gauges at scrape time', async () => {
    h = await startHarness({
      origins: [
        {
          behaviours: {
            '/page': { kind: 'normal', cacheControl: 'max-age=60' },
            '/hot': { kind: 'normal', cacheControl: 'max-age=60', delayMs: 150 },
            '/soon-stale': { kind: 'normal', cacheControl: 'max-age=1, stale-if-error=60' },
            '/e503': { kind: 'error', status: 503 },
            '/hang': { kind: 'hang' },
            '/garbage': { kind: 'garbage' },
            '/huge': { kind: 'huge-headers', bytes: 100_000 },
            '/reset': { kind: 'reset-before-headers' },
            '/midbody': { kind: 'reset-mid-body', afterBytes: 100, then: { bodySize: 50_000 } },
            '/stall': { kind: 'stall', afterBytes: 100, then: { bodySize: 50_000 } },
          },
        },
      ],
      // Passive ejection off: every scripted failure must reach the origin, one class each.
      config: { timeouts: { first_byte: '300ms', between_bytes: '300ms' }, cache: { grace: '0' }, health: { consecutive_failures: 0 }, admin: { token: TOKEN } },
    });
    // 1 miss + 2 hits; 5 concurrent misses on one key collapse into 1 fetch + 4 waiters; 1 object to go stale.
    await h.get('/page');
    await h.get('/page');
    await h.get('/page');
    await Promise.all(Array.from({ length: 5 }, () => h!.get('/hot')));
    await h.get('/soon-stale');
    expect((await h.get('/e503')).status).toBe(503);
    for (const path of Object.keys(FAILURES)) await h.get(path).catch(() => undefined); // mid-body failures abort the client
    await sleep(1100);
    await h.origins[0]!.refuse();
    const stale = await h.get('/soon-stale');
    expect(stale.headers['cache-status']).toMatch(/stale-if-error/);
    expect((await h.get('/refused')).status).toBe(503);
    // No backend left: destination_unavailable without any attempt.
    expect((await admin(h, '/api/backends/default/app1/health', { method: 'PUT', body: 'sick', token: TOKEN })).status).toBe(200);
    expect((await h.get('/nobody')).status).toBe(503);

    const total = 3 + 5 + 1 + 1 + Object.keys(FAILURES).length + 1 + 1 + 1;
    expect(await until(async () => sum(await scrape(h!, TOKEN), 'lacquer_requests_total') === total)).toBe(true);
    const m = await scrape(h, TOKEN);
    const get = (k: string) => m.get(k);

    expect(get('lacquer_requests_total{cache_status="hit",status_class="2xx"}')).toBe(2);
    expect(get('lacquer_requests_total{cache_status="collapsed",status_class="2xx"}')).toBe(4);
    expect(get('lacquer_requests_total{cache_status="stale",status_class="2xx"}')).toBe(1);
    expect(get('lacquer_requests_total{cache_status="miss",status_class="2xx"}')).toBe(3); // /page, /hot, /soon-stale
    // Mid-body failures: a 200 head then a cut connection is counted as aborted, not as a success.
    expect(get('lacquer_requests_total{cache_status="miss",status_class="aborted"}')).toBe(2);
    expect(get('lacquer_coalesced_total')).toBe(4);
    expect(get('lacquer_stale_served_total{reason="stale-if-error"}')).toBe(1);
    expect(sum(m, 'lacquer_request_duration_seconds_count')).toBe(total);

    // A reset on a reused keep-alive socket is retried once on a fresh one (FAILURES.md, connection_terminated),
    // and counted as a retry: each retry is one more attempt of that class.
    const keepaliveRetries = sum(m, 'lacquer_retries_total', { reason: 'stale-keepalive' });
    expect(keepaliveRetries).toBe(sum(m, 'lacquer_retries_total'));
    for (const cls of Object.values(FAILURES)) {
      const extra = cls === 'connection_terminated' ? keepaliveRetries : 0;
      expect(get(`lacquer_backend_fetch_errors_total{pool="default",backend="app1",error="${cls}"}`), cls).toBe(1 + extra);
    }
    // The stale-if-error serve and /refused each failed to connect.
    expect(get('lacquer_backend_fetch_errors_total{pool="default",backend="app1",error="connection_refused"}')).toBe(2);
    expect(sum(m, 'lacquer_backend_fetch_errors_total', { error: 'destination_unavailable' })).toBe(1);
    // The origin answering 503 is a response, not a fetch error.
    expect(sum(m, 'lacquer_backend_fetch_errors_total', { error: 'origin_5xx' })).toBe(0);
    expect(get('lacquer_backend_responses_total{pool="default",backend="app1",status_class="5xx"}')).toBe(1);
    expect(get('lacquer_backend_requests_total{pool="default",backend="app1",outcome="ok"}')).toBe(4); // /page, /hot, /soon-stale, /e503
    expect(sum(m, 'lacquer_backend_requests_total')).toBe(4 + Object.keys(FAILURES).length + 2 + keepaliveRetries);
    // Synthetic errors for the failures before headers; mid-body failures were aborted (status already sent).
    expect(sum(m, 'lacquer_requests_total', { cache_status: 'synth', status_class: '5xx' })).toBe(6);
    expect(get('lacquer_backend_ttfb_seconds_count{pool="default",backend="app1"}')).toBeGreaterThanOrEqual(4);
    expect(get('lacquer_backend_ttfb_seconds_bucket{le="0.25",pool="default",backend="app1"}')).toBeLessThan(get('lacquer_backend_ttfb_seconds_count{pool="default",backend="app1"}')!);

    expect(get('lacquer_backend_healthy{pool="default",backend="app1"}')).toBe(0);
    expect(get('lacquer_backend_state{pool="default",backend="app1",state="sick"}')).toBe(1);
    expect(get('lacquer_backend_inflight{pool="default",backend="app1"}')).toBe(0);
    expect(get('lacquer_backend_queue_length{pool="default",backend="app1"}')).toBe(0);
    expect(get('lacquer_pool_healthy_backends{pool="default"}')).toBe(0);
    expect(get('lacquer_cache_objects')).toBe(3);
    expect(get('lacquer_cache_bytes')).toBeGreaterThan(0);
    expect(get('lacquer_cache_max_bytes')).toBe(256 * 1024 * 1024);
    expect(get('lacquer_cache_evictions_total')).toBe(0);
    // Default process and event-loop metrics.
    expect(get('process_resident_memory_bytes')).toBeGreaterThan(0);
    expect([...m.keys()].some((k) => k.startsWith('nodejs_eventloop_lag_p99_seconds'))).toBe(true);
  });

  it('declares every metric with help text and never puts a URL in a label', async () => {
    h = await startHarness({ origins: [{ behaviours: { '*': { kind: 'normal', cacheControl: 'max-age=60' } } }] });
    for (let i = 0; i < 20; i++) await h.get(`/unique/path/${i}?q=${i}`);
    const text = (await admin(h, '/metrics')).text;
    const names = new Set([...text.matchAll(/^(lacquer_[a-z_]+?)(?:_bucket|_sum|_count)?(?:\{| )/gm)].map((x) => x[1]!));
    for (const required of [
      'lacquer_requests_total', 'lacquer_request_duration_seconds', 'lacquer_backend_requests_total', 'lacquer_backend_fetch_errors_total',
      'lacquer_backend_healthy', 'lacquer_backend_ttfb_seconds', 'lacquer_backend_inflight', 'lacquer_backend_queue_length',
      'lacquer_coalesced_total', 'lacquer_cache_bytes', 'lacquer_cache_objects', 'lacquer_cache_evictions_total',
    ]) {
      expect(names.has(required) || text.includes(`# TYPE ${required} `), required).toBe(true);
    }
    for (const name of ['lacquer_retries_total', 'lacquer_stale_served_total', 'lacquer_requests_total']) expect(text).toMatch(new RegExp(`# HELP ${name} \\S.{20,}`));
    for (const n of names) expect(text, n).toMatch(new RegExp(`# HELP ${n} \\S`));
    expect(text).not.toMatch(/\/unique\/path/);
    expect(text).not.toMatch(/q=\d/);
  });

  it('counts retries by reason when a backend refuses and another answers', async () => {
    h = await startHarness({ origins: [{}, {}] });
    await h.origins[1]!.refuse();
    for (let i = 0; i < 4; i++) expect((await h.get(`/r${i}`)).status).toBe(200);
    expect(await until(async () => sum(await scrape(h!), 'lacquer_requests_total') === 4)).toBe(true);
    const m = await scrape(h);
    expect(sum(m, 'lacquer_retries_total')).toBeGreaterThanOrEqual(1);
    expect(sum(m, 'lacquer_backend_fetch_errors_total', { backend: 'app2', error: 'connection_refused' })).toBe(sum(m, 'lacquer_retries_total'));
    expect(sum(m, 'lacquer_requests_total', { status_class: '2xx' })).toBe(4);
  });
});

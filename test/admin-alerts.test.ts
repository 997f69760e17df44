// Alert rules: parsing, firing once and resolving once against a local webhook receiver, `for`, hysteresis
// and the minimum interval, Slack format, and webhook failures retried with backoff without slowing requests.
import { afterEach, describe, expect, it } from 'vitest';
import { formatValue, holds, parseCondition } from '../src/observe/alert-conditions.ts';
import { sleep, startHarness, type Harness } from './helpers.ts';
import { admin, startReceiver, until, type Receiver } from './admin-helpers.ts';

const TOKEN = 'alerts-test-token-0123456789';

let h: Harness | undefined;
const receivers: Receiver[] = [];
afterEach(async () => {
  await h?.close();
  h = undefined;
  await Promise.all(receivers.splice(0).map((r) => r.close()));
});

async function receiver(): Promise<Receiver> {
  const r = await startReceiver();
  receivers.push(r);
  return r;
}

type AlertsView = { firing: string[]; rules: { name: string; state: string; since: string | null; value: number | null }[]; deliveries: { result: string; attempts: number; lastError?: string }[] };
const alerts = async (hh: Harness) => (await admin(hh, '/api/alerts', { token: TOKEN })).json() as AlertsView;

describe('alert conditions', () => {
  it('parses signals with thresholds in their units, and says what is valid otherwise', () => {
    expect(parseCondition('error_rate > 1%')).toMatchObject({ signal: 'error_rate', op: '>', threshold: 0.01 });
    expect(parseCondition('hit_ratio <= 0.5')).toMatchObject({ signal: 'hit_ratio', op: '<=', threshold: 0.5 });
    expect(parseCondition('backend_ttfb_p99 > 2s')).toMatchObject({ signal: 'backend_ttfb_p99', threshold: 2000 });
    expect(parseCondition('request_rate >= 50/s')).toMatchObject({ threshold: 50 });
    expect(parseCondition(' backend_unhealthy ')).toMatchObject({ signal: 'backend_unhealthy', unit: 'flag' });
    expect(parseCondition('error_rate > 2s')).toMatchObject({ problem: expect.stringMatching(/like 1% or 0.01/) });
    expect(parseCondition('errors > 1%')).toMatchObject({ problem: expect.stringMatching(/known signal \(error_rate/) });
    expect(parseCondition('backend_unhealthy > 0')).toMatchObject({ problem: expect.stringMatching(/no threshold/) });
    expect(parseCondition('latency_p99')).toMatchObject({ problem: expect.stringMatching(/threshold like 2s/) });
    const c = parseCondition('error_rate > 1%');
    if ('problem' in c) throw new Error(c.problem);
    expect(holds(c, 0.02)).toBe(true);
    expect(holds(c, 0.01)).toBe(false);
    expect(holds(c, undefined)).toBe(false); // no traffic is not an error rate
    expect(formatValue('ratio', 0.125)).toBe('12.5%');
    expect(formatValue('duration', 2310)).toBe('2.31s');
  });
});

describe('alerts', () => {
  it('fires once when the error rate crosses its threshold and sends one resolved message when it clears', async () => {
    const hook = await receiver();
    const slack = await receiver();
    h = await startHarness({
      origins: [{ behaviours: { '/bad': { kind: 'error', status: 503 }, '*': { kind: 'normal' } } }],
      config: {
        admin: { token: TOKEN },
        health: { consecutive_failures: 0 },
        alerts: {
          interval: '100ms',
          webhooks: [{ url: hook.url }, { url: slack.url, format: 'slack' }],
          rules: [{ name: 'errors', when: 'error_rate > 20%', window: '1500ms', clear_for: '300ms' }],
        },
      },
    });
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(String((await h.get('/bad')).headers['x-request-id']));
    expect(await until(() => hook.received.length >= 1)).toBe(true);
    const firing = hook.received[0]!.body;
    expect(firing).toMatchObject({ rule: 'errors', state: 'firing', condition: 'error_rate > 20%', signal: 'error_rate', value: 1, threshold: 0.2, value_text: '100%', threshold_text: '20%' });
    // The rule is evaluated every 100 ms: it may fire after the first bad responses, before all five.
    const seen = Number(/\((\d) of \1 responses were 5xx/.exec(String(firing.summary))?.[1]);
    expect(seen).toBeGreaterThanOrEqual(1);
    expect(String(firing.summary)).toMatch(/^errors firing: error_rate 100% > 20% \(\d of \d responses were 5xx, window 1.5s\)$/);
    expect(Date.parse(String(firing.since))).toBeLessThanOrEqual(Date.parse(String(firing.at)));
    const top = firing.top_failures as { class: string; count: number; example_request_id: string; backend: string }[];
    expect(top[0]).toMatchObject({ class: 'origin_5xx', count: seen, backend: 'app1' });
    expect(ids).toContain(top[0]!.example_request_id);
    expect(await until(() => slack.received.length >= 1)).toBe(true);
    expect(slack.received[0]!.body).toEqual({ text: expect.stringMatching(/^:rotating_light: \*\[FIRING\] errors\* — errors firing: error_rate 100%[\s\S]*• `origin_5xx` ×\d \(latest: request [0-9a-f-]+ on app1\)/) });
    const during = await alerts(h);
    expect(during.firing).toEqual(['errors']);
    expect(during.rules[0]).toMatchObject({ name: 'errors', state: 'firing', value: 1 });
    expect((await admin(h, '/metrics', { token: TOKEN })).text).toMatch(/^lacquer_alert_firing\{rule="errors"\} 1$/m);
    // Still failing: no second notification.
    for (let i = 0; i < 3; i++) await h.get('/bad');
    await sleep(300);
    expect(hook.received.length).toBe(1);
    // Healthy traffic until the bad requests leave the window: exactly one resolved message.
    const deadline = Date.now() + 4000;
    while (hook.received.length < 2 && Date.now() < deadline) {
      await h.get('/good');
      await sleep(20);
    }
    expect(hook.received.map((r) => r.body.state)).toEqual(['firing', 'resolved']);
    expect(hook.received[1]!.body).toMatchObject({ rule: 'errors', state: 'resolved', summary: expect.stringMatching(/errors resolved: error_rate back to/) });
    expect(await until(() => slack.received.length >= 2)).toBe(true);
    expect(String(slack.received[1]!.body.text)).toMatch(/^:white_check_mark: \*\[RESOLVED\] errors\*/);
    await sleep(300);
    expect(hook.received.length).toBe(2);
    expect((await alerts(h)).firing).toEqual([]);
  });

  it('waits for `for` (pending first), keeps firing through a short clear (hysteresis), and respects min_interval', async () => {
    const hook = await receiver();
    h = await startHarness({
      origins: [{}, {}],
      config: {
        admin: { token: TOKEN },
        alerts: { interval: '50ms', min_interval: '1m', webhooks: [{ url: hook.url }], rules: [{ name: 'backend-down', when: 'backend_unhealthy', for: '400ms', clear_for: '400ms' }] },
      },
    });
    const set = (v: string) => admin(h!, '/api/backends/default/app2/health', { method: 'PUT', body: v, token: TOKEN });
    await set('sick');
    expect(await until(async () => (await alerts(h!)).rules[0]!.state === 'pending', 1000)).toBe(true);
    expect(hook.received.length).toBe(0);
    expect(await until(() => hook.received.length === 1, 2000)).toBe(true);
    const fired = hook.received[0]!.body;
    expect(fired).toMatchObject({ rule: 'backend-down', state: 'firing', value: 1, threshold: null });
    expect(String(fired.summary)).toMatch(/default\/app2 sick/);
    expect(Date.parse(String(fired.at)) - Date.parse(String(fired.since))).toBeGreaterThanOrEqual(400);
    // A clear shorter than clear_for does not resolve.
    await set('auto');
    await sleep(150);
    await set('sick');
    await sleep(500);
    expect(hook.received.length).toBe(1);
    expect((await alerts(h)).rules[0]!.state).toBe('firing');
    // A real clear resolves once...
    await set('auto');
    expect(await until(() => hook.received.length === 2, 2000)).toBe(true);
    expect(hook.received[1]!.body.state).toBe('resolved');
    // ...and the next problem within min_interval does not fire again (no flapping spam).
    await set('sick');
    await sleep(800);
    expect(hook.received.length).toBe(2);
    expect((await alerts(h)).rules[0]!.state).toBe('pending');
  });

  it('retries a failing webhook with backoff until it is delivered, and logs each failure', async () => {
    const hook = await receiver();
    hook.failNext(2, 500);
    h = await startHarness({
      config: {
        admin: { token: TOKEN },
        alerts: { interval: '50ms', delivery_backoff: '100ms', delivery_retries: 3, webhooks: [{ url: hook.url }], rules: [{ name: 'down', when: 'backend_unhealthy' }] },
      },
    });
    await admin(h, '/api/backends/default/app1/health', { method: 'PUT', body: 'sick', token: TOKEN });
    expect(await until(() => hook.received.length === 1, 3000)).toBe(true);
    expect(hook.attempts).toBe(3);
    expect(hook.received[0]!.body.state).toBe('firing');
    const warnings = h.log.lines.filter((l) => l.type === 'alert' && l.level === 'warn' && String(l.msg).includes('retrying'));
    expect(warnings.map((w) => w.error)).toEqual(['HTTP 500', 'HTTP 500']);
    expect(warnings.map((w) => w.retry_in_ms)).toEqual([100, 200]);
    const view = await alerts(h);
    expect(view.deliveries[0]).toMatchObject({ result: 'delivered', attempts: 3 });
    const metrics = (await admin(h, '/metrics', { token: TOKEN })).text;
    expect(metrics).toMatch(/^lacquer_alert_notifications_total\{result="retried"\} 2$/m);
    expect(metrics).toMatch(/^lacquer_alert_notifications_total\{result="delivered"\} 1$/m);
  });

  it('gives up on a dead webhook after its retries, logs it, and never slows requests down', async () => {
    const dead = await receiver();
    const url = dead.url;
    await dead.close();
    receivers.splice(receivers.indexOf(dead), 1);
    h = await startHarness({
      origins: [{ behaviours: { '*': { kind: 'normal', cacheControl: 'max-age=60' } } }],
      config: {
        admin: { token: TOKEN },
        alerts: { interval: '50ms', delivery_backoff: '100ms', delivery_retries: 2, delivery_timeout: '500ms', webhooks: [{ url }], rules: [{ name: 'down', when: 'request_rate > 0' }] },
      },
    });
    await h.get('/warm');
    const timings: number[] = [];
    const until1s = Date.now() + 700;
    while (Date.now() < until1s) {
      const t = performance.now();
      await h.get('/warm');
      timings.push(performance.now() - t);
      await sleep(10);
    }
    expect(await until(() => h!.log.lines.some((l) => l.type === 'alert' && l.level === 'error'), 3000)).toBe(true);
    const gaveUp = h.log.lines.find((l) => l.type === 'alert' && l.level === 'error')!;
    expect(gaveUp).toMatchObject({ rule: 'down', url, attempts: 3, error: 'ECONNREFUSED' });
    expect((await alerts(h)).deliveries[0]).toMatchObject({ result: 'failed', attempts: 3, lastError: 'ECONNREFUSED' });
    timings.sort((a, b) => a - b);
    expect(timings.length).toBeGreaterThan(10);
    expect(timings[Math.floor(timings.length * 0.95)]!).toBeLessThan(100);
  });
});

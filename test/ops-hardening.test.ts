// Issue 11, operations: every value `serve` would refuse fails `check` (in one pass, one line each); every
// start-up failure is one line naming the setting; secrets are masked wherever a value is shown; operational
// messages reach stderr whatever log.access says; `--version` and the LICENSE.
import net from 'node:net';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { startHarness, type Harness, type LogLine } from './helpers.ts';
import { admin } from './admin-helpers.ts';
import { lacquer, ROOT, waitFor } from './spawn-node.ts';

const dir = mkdtempSync(join(tmpdir(), 'lacquer-ops-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let h: Harness | undefined;
const held: net.Server[] = [];
afterEach(async () => {
  await h?.close();
  h = undefined;
  await Promise.all(held.splice(0).map((s) => new Promise((r) => s.close(r))));
});

function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

/** A port another process (here: this one) listens on. */
async function takenPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  held.push(s);
  return (s.address() as net.AddressInfo).port;
}

const problems = (stderr: string) => stderr.split('\n').filter((l) => / — /.test(l));
const BACKEND = 'backends:\n  - name: app1\n    url: http://127.0.0.1:9\n';

describe('lacquer check: what serve would refuse', () => {
  it('cache.memory: 0 fails check with the one-line message (serve crashed with an lru-cache stack trace)', async () => {
    const r = await lacquer(['check', '-c', file('mem0.yaml', `cache:\n  memory: 0\n${BACKEND}`)]).exited;
    expect(r.code).toBe(1);
    expect(problems(r.stderr)).toEqual(['cache.memory: 0 — a size above 0, like 64MiB']);
  });

  it('reports schema and semantic problems in one pass: a bad size, a duplicate backend, an unknown pool, admin.listen equal to listen', async () => {
    const text = [
      'listen: 127.0.0.1:7001',
      'admin:\n  listen: 127.0.0.1:7001',
      'cache:\n  memory: lots',
      'backends:\n  - name: app1\n    url: http://127.0.0.1:9\n  - name: app1\n    url: http://127.0.0.1:10',
      'routes:\n  - path_prefix: /api\n    pool: api',
      '',
    ].join('\n');
    const r = await lacquer(['check', '-c', file('many.yaml', text)]).exited;
    expect(r.code).toBe(1);
    expect(problems(r.stderr).sort()).toEqual([
      'admin.listen: "127.0.0.1:7001" — an address other than listen (127.0.0.1:7001): the admin plane never shares the public port',
      'backends.1.name: "app1" — a name not used by another backend (in any pool)',
      'cache.memory: "lots" — a size like 512B, 64KiB, 256MiB, 1GiB (or a number of bytes)',
      'routes.0.pool: "api" — one of the pools: default',
    ]);
    expect(r.stderr.split('\n')[0]).toMatch(/: 4 problems$/);
  });

  it('a timer longer than Node can set is refused (it would fire every millisecond)', async () => {
    const r = await lacquer(['check', '-c', file('timer.yaml', `alerts:\n  interval: 30d\n${BACKEND}`)]).exited;
    expect(problems(r.stderr)).toEqual(['alerts.interval: "30d" — at most 24d (the longest timer Node.js can set)']);
  });

  it('log.access in a missing directory is refused by check and by serve, and no directory is created', async () => {
    const missing = join(dir, 'no-such-dir');
    const p = file('logdir.yaml', `log:\n  access: ${missing}/a.log\n${BACKEND}`);
    const c = await lacquer(['check', '-c', p]).exited;
    expect(c.code).toBe(1);
    expect(problems(c.stderr)).toEqual([`log.access: "${missing}/a.log" — a path in an existing directory (${missing} does not exist; Lacquer does not create directories)`]);
    const s = await lacquer(['serve', '-c', p]).exited;
    expect(s.code).toBe(1);
    expect(problems(s.stderr)).toHaveLength(1);
    expect(existsSync(missing)).toBe(false);
  });

  it('never echoes a secret: admin.token and a webhook URL with userinfo and ?token= are masked', async () => {
    const text = `admin:\n  token: s3cret\nalerts:\n  webhooks:\n    - url: ftp://user:PASS@hooks.example/services/T0/B0/XXXXXXXXXXXXXXXX?token=abc\n${BACKEND}`;
    const r = await lacquer(['check', '-c', file('secret.yaml', text)]).exited;
    expect(r.code).toBe(1);
    expect(problems(r.stderr)).toEqual([
      'admin.token: "***" — a token of at least 16 characters',
      'alerts.webhooks.0.url: "ftp://***@hooks.example/services/***/***/***?token=***" — an http(s) URL',
    ]);
    expect(r.stderr).not.toMatch(/s3cret|PASS|abc|XXXX/);
  });
});

describe('start-up failures: one line naming the setting, exit 1', () => {
  it('a taken admin port names admin.listen', async () => {
    const port = await takenPort();
    const p = file('admin-taken.yaml', `listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:${port}\n${BACKEND}`);
    const r = await lacquer(['serve', '-c', p]).exited;
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([`${p}: cannot start: admin.listen: 127.0.0.1:${port} (EADDRINUSE) — a port no other process listens on`]);
    expect(r.stdout).toBe('');
  });

  it('a taken listen port with log.access in a file: the same one line, no "sonic boom is not ready yet"', async () => {
    const port = await takenPort();
    const p = file('listen-taken.yaml', `listen: 127.0.0.1:${port}\nadmin:\n  listen: 127.0.0.1:0\nlog:\n  access: ${join(dir, 'taken-access.log')}\n${BACKEND}`);
    const r = await lacquer(['serve', '-c', p]).exited;
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([`${p}: cannot start: listen: 127.0.0.1:${port} (EADDRINUSE) — a port no other process listens on`]);
  });

  it('`lacquer demo` (npm start) with its listen port taken: one line naming listen, no stack trace', async () => {
    const [taken, b1, b2] = [await takenPort(), await freePort(), await freePort()];
    const p = file('demo.yaml', `listen: 127.0.0.1:${taken}\nadmin:\n  listen: 127.0.0.1:0\nbackends:\n  - name: app1\n    url: http://127.0.0.1:${b1}\n  - name: app2\n    url: http://127.0.0.1:${b2}\n`);
    const r = await lacquer(['demo', '-c', p, '--no-walkthrough']).exited;
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([`${p}: cannot start: listen: 127.0.0.1:${taken} (EADDRINUSE) — a port no other process listens on`]);
  });

  it('`lacquer demo` with a backend port taken names that backend', async () => {
    const taken = await takenPort();
    const p = file('demo-b.yaml', `listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\nbackends:\n  - name: app1\n    url: http://127.0.0.1:${taken}\n`);
    const r = await lacquer(['demo', '-c', p, '--no-walkthrough']).exited;
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([`${p}: cannot start: backends.0.url: http://127.0.0.1:${taken} (EADDRINUSE) — a port no other process listens on`]);
  });
});

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

describe('operational messages', () => {
  it('reach stderr when log.access is a file (the start line used to go only to the file); access lines stay in the file', async () => {
    const log = join(dir, 'access.log');
    const p = file('tofile.yaml', `listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\nlog:\n  access: ${log}\n${BACKEND}`);
    const s = lacquer(['serve', '-c', p]);
    try {
      await waitFor(() => s.stderr().includes('listening'), 15_000, () => `stderr ${s.stderr()}`);
      const start = JSON.parse(s.stderr().split('\n').find((l) => l.includes('listening'))!) as { listen: string };
      const res = await fetch(`http://${start.listen}/x`);
      await res.text();
      await waitFor(() => existsSync(log) && readFileSync(log, 'utf8').includes('"type":"access"'), 3000);
      expect(s.stdout()).toBe('');
    } finally {
      s.child.kill('SIGTERM');
    }
    const r = await s.exited;
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/"msg":"stopped"/);
    // the file keeps the whole story, in order: start, the request, stop
    const lines = readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { msg?: string; type?: string });
    const at = (pred: (l: { msg?: string; type?: string }) => boolean) => lines.findIndex(pred);
    expect(at((l) => /listening/.test(l.msg ?? ''))).toBeLessThan(at((l) => l.type === 'access'));
    expect(at((l) => l.type === 'access')).toBeLessThan(at((l) => l.msg === 'stopped'));
  });
});

describe('secrets in the admin API and the logs', () => {
  const SECRETS = ['PASS', 'k3y-value', 'probe-bearer', 'XXXXXXXXXXXXXXXXXXXXXXXX', 'qs-secret', 'admin-token-0123456789'];
  const TOKEN = 'admin-token-0123456789';

  it('/api/config, /api/alerts and delivery failure log lines mask userinfo, header values, Slack path tokens and query values', async () => {
    const closed = await freePort();
    h = await startHarness({
      config: {
        admin: { token: TOKEN },
        probes: { request: ['GET /ping HTTP/1.1', 'Host: app', 'Authorization: Bearer probe-bearer', 'Connection: close'] },
        alerts: {
          delivery_retries: 0,
          webhooks: [
            { url: `http://user:PASS@127.0.0.1:${closed}/hook?token=qs-secret`, headers: { 'X-Api-Key': 'k3y-value' } },
            { url: 'https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX', format: 'slack' },
          ],
        },
      },
    });
    const cfg = await admin(h, '/api/config', { token: TOKEN });
    expect(cfg.status).toBe(200);
    for (const s of SECRETS) expect(cfg.text, s).not.toContain(s);
    const active = (cfg.json() as { active: { alerts: { webhooks: { url: string; headers?: Record<string, string> }[] }; probes: { request: string[] } } }).active;
    expect(active.alerts.webhooks[0]).toMatchObject({ url: `http://***@127.0.0.1:${closed}/hook?token=***`, headers: { 'X-Api-Key': '***' } });
    expect(active.alerts.webhooks[1]!.url).toBe('https://hooks.slack.com/services/***/***/***');
    expect(active.probes.request).toEqual(['GET /ping HTTP/1.1', 'Host: app', 'Authorization: ***', 'Connection: ***']); // every header value but Host

    // A notification whose delivery to the first receiver fails (nothing listens there).
    h.proxy.plane.webhooks.send({
      proxy: 'lacquer', rule: 'r', state: 'firing', condition: 'backend_unhealthy', signal: 'backend_unhealthy', value: 1, threshold: null,
      value_text: '1', threshold_text: null, since: new Date().toISOString(), at: new Date().toISOString(), summary: 's', top_failures: [],
    });
    await waitFor(() => h!.log.lines.some((l: LogLine) => String(l.msg).includes('alert delivery to http://***@')), 5000, () => JSON.stringify(h!.log.lines.slice(-3)));
    const alerts = await admin(h, '/api/alerts', { token: TOKEN });
    expect(alerts.text).toContain(`http://***@127.0.0.1:${closed}/hook?token=***`);
    const logged = JSON.stringify(h.log.lines);
    for (const s of SECRETS) {
      expect(alerts.text, s).not.toContain(s);
      expect(logged, s).not.toContain(s);
    }
  });
});

describe('lacquer --version and the LICENSE', () => {
  it('prints the package version', async () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string; license: string };
    const r = await lacquer(['--version']).exited;
    expect([r.code, r.stdout]).toEqual([0, `${pkg.version}\n`]);
  });

  it('LICENSE is the license package.json names (MIT)', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { license: string };
    expect(pkg.license).toBe('MIT');
    expect(readFileSync(join(ROOT, 'LICENSE'), 'utf8')).toMatch(/^MIT License\n[\s\S]*Permission is hereby granted, free of charge/);
  });
});

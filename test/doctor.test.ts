// `lacquer doctor`: each defect the doctor must name, against real fake origins on 127.0.0.1, plus a TLS
// origin with certificates made at test time by `openssl req -x509` (skipped, saying so, without openssl).
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { validateConfig } from '../src/config/load.ts';
import type { Config, ConfigInput } from '../src/config/schema.ts';
import { evaluate, type Finding } from '../src/doctor/findings.ts';
import { examine, runDoctor, type TargetReport } from '../src/doctor/run.ts';
import { probeFor, targetFromUrl, targetsFromConfig } from '../src/doctor/targets.ts';
import type { Lookup } from '../src/doctor/dns.ts';
import { HINTS } from '../src/errors.ts';
import { startOrigin, type Origin, type OriginOptions } from '../src/lab/origin.ts';

const node = join(process.cwd(), 'node_modules/.bin/node');
const cli = join(process.cwd(), 'src/cli/main.ts');

let origins: Origin[] = [];
afterEach(async () => {
  await Promise.all(origins.map((o) => o.close()));
  origins = [];
});

async function origin(o: OriginOptions = {}): Promise<Origin> {
  const x = await startOrigin(o);
  origins.push(x);
  return x;
}

function config(urls: string[], extra: Partial<ConfigInput> = {}): Config {
  return validateConfig({ backends: urls.map((url, i) => ({ name: `app${i + 1}`, url })), ...extra });
}

async function one(url: string, extra: Partial<ConfigInput> = {}, repeat = 3): Promise<TargetReport> {
  const [t] = targetsFromConfig(config([url], extra));
  return examine(t!, { repeat });
}

const bad = (r: TargetReport): Finding[] => r.findings.filter((f) => f.severity !== 'ok');
const of = (r: TargetReport, check: Finding['check']): Finding[] => r.findings.filter((f) => f.check === check);

describe('doctor against plain HTTP origins', () => {
  it('reports a healthy origin with every measurement and only ok findings', async () => {
    const o = await origin({ keepAliveTimeoutMs: 10_000 });
    const r = await one(o.url);
    expect(r.severity).toBe('ok');
    expect(bad(r)).toEqual([]);
    expect(r.dns.addresses).toEqual([{ address: '127.0.0.1', family: 4 }]);
    expect(r.tcp).toHaveLength(1);
    expect(r.tcp[0]!.error).toBeUndefined();
    expect(r.http!.samples.map((s) => s.status)).toEqual([200, 200, 200]);
    for (const s of r.http!.samples) {
      expect(s.ttfbMs).toBeGreaterThan(0);
      expect(s.totalMs).toBeGreaterThanOrEqual(s.ttfbMs!);
      expect(s.headerBytes).toBeGreaterThan(100);
      expect(s.keepAliveS).toBe(10);
      expect(s.bodyBytes).toBe(1024);
    }
    expect(o.count('/')).toBe(3);
    expect(of(r, 'keepalive')[0]!.message).toMatch(/10s > timeouts.idle 4s/);
  });

  it('warns when the first byte takes more than half of first_byte, and fails past it', async () => {
    const o = await origin({ behaviours: { '/near': { kind: 'slow', firstByteMs: 300 }, '/over': { kind: 'slow', firstByteMs: 900 } } });
    const cfg = { timeouts: { first_byte: '500ms' } };
    const near = await examine(targetFromUrl(`${o.url}/near`, config([o.url], cfg)), { repeat: 2 });
    const fb = of(near, 'first_byte')[0]!;
    expect(fb.severity).toBe('warn');
    expect(fb.message).toMatch(/first byte took up to 3\d\dms, [67]\d% of timeouts.first_byte \(500ms\)/);
    expect(fb.class).toBe('http_response_timeout');

    const over = await examine(targetFromUrl(`${o.url}/over`, config([o.url], cfg)), { repeat: 3 });
    const f = of(over, 'first_byte')[0]!;
    expect(f.severity).toBe('fail');
    expect(f.class).toBe('http_response_timeout');
    expect(f.message).toMatch(/no response head within first_byte 500ms/);
    expect(f.fix).toContain(HINTS.http_response_timeout);
    // One timeout is enough: the doctor does not wait out every repeat.
    expect(over.http!.samples).toHaveLength(1);
    expect(over.severity).toBe('fail');
  });

  it('fails a response head over limits.response_header_size and warns near it', async () => {
    const o = await origin({ behaviours: { '/huge': { kind: 'huge-headers', bytes: 20_000 }, '/big': { kind: 'huge-headers', bytes: 13_500 } } });
    const cfg = config([o.url], { limits: { response_header_size: '16KiB' } });
    const huge = await examine(targetFromUrl(`${o.url}/huge`, cfg), { repeat: 1 });
    const h = of(huge, 'headers')[0]!;
    expect(h.severity).toBe('fail');
    expect(h.class).toBe('http_response_header_section_size');
    expect(huge.http!.samples[0]!.headerBytes).toBeGreaterThan(20_000);
    expect(h.message).toMatch(/over limits.response_header_size \(16KiB = 16384 bytes\)/);
    expect(h.fix).toContain(HINTS.http_response_header_section_size);

    const big = await examine(targetFromUrl(`${o.url}/big`, cfg), { repeat: 1 });
    expect(of(big, 'headers')[0]!.severity).toBe('warn');
    expect(big.severity).toBe('warn');
  });

  it('warns about the keep-alive race when the origin keep-alive timeout is not above timeouts.idle', async () => {
    const o = await origin({ keepAliveTimeoutMs: 3000 });
    const r = await one(o.url, { timeouts: { idle: '4s' } }, 1);
    const k = of(r, 'keepalive')[0]!;
    expect(k.severity).toBe('warn');
    expect(k.class).toBe('connection_terminated');
    expect(k.message).toMatch(/Keep-Alive: timeout=3 .* not above timeouts.idle \(4s\)/);
    // Says that Lacquer adapts on the hint, and by how much (undici: hint − 1 s).
    expect(k.message).toMatch(/lowers its idle time on this hint \(to 2s\)/);
    expect(k.fix).toMatch(/Set timeouts.idle for app1 below 3s \(e.g. 2s\)/);

    const fine = await one(o.url, { timeouts: { idle: '2s' } }, 1);
    expect(of(fine, 'keepalive')[0]!.severity).toBe('ok');
  });

  it('fails a port with nothing listening, with the connection_refused hint, and does not send HTTP', async () => {
    const o = await origin();
    await o.refuse();
    const r = await one(o.url);
    expect(r.severity).toBe('fail');
    const c = of(r, 'connect')[0]!;
    expect(c.class).toBe('connection_refused');
    expect(c.message).toMatch(/nothing is listening \(ECONNREFUSED\)/);
    expect(c.fix).toBe(HINTS.connection_refused);
    expect(r.http).toBeUndefined();
  });

  it('fails a probe path that answers other than expected_status when the probe is set, warns for the default probe', async () => {
    const o = await origin({ behaviours: { '/health': { kind: 'error', status: 503 }, '/': { kind: 'error', status: 500 } } });
    const set = await examine(targetFromUrl(`${o.url}/health`), { repeat: 2 });
    const s = of(set, 'status')[0]!;
    expect(s.severity).toBe('fail');
    expect(s.message).toMatch(/GET \/health answered 503 \(2 of 2\), expected 200: health probes mark the backend sick/);
    expect(s.message).toMatch(/received-status/);
    const expected = await examine(targetFromUrl(`${o.url}/health`, undefined, 503), { repeat: 1 });
    expect(of(expected, 'status')[0]!.severity).toBe('ok');
    const dflt = await one(o.url, {}, 1);
    expect(of(dflt, 'status')[0]!.severity).toBe('warn');
    expect(dflt.severity).toBe('warn');
  });

  it('classes a body cut mid-way and a non-HTTP answer as Lacquer would (http_response_incomplete, http_protocol_error)', async () => {
    const o = await origin({ behaviours: { '/reset': { kind: 'reset-mid-body', afterBytes: 100 }, '/garbage': { kind: 'garbage' } } });
    const reset = await examine(targetFromUrl(`${o.url}/reset`), { repeat: 2 });
    expect(of(reset, 'http').map((f) => [f.severity, f.class])).toEqual([['fail', 'http_response_incomplete']]);
    expect(of(reset, 'http')[0]!.message).toMatch(/2 of 2 requests failed http_response_incomplete/);
    const garbage = await examine(targetFromUrl(`${o.url}/garbage`), { repeat: 1 });
    expect(of(garbage, 'http').map((f) => [f.severity, f.class])).toEqual([['fail', 'http_protocol_error']]);
  });

  it('takes probe path and expected_status from the pool or the top-level probes, and tests pool backends too', async () => {
    const o = await origin({ keepAliveTimeoutMs: 10_000, behaviours: { '/health': { kind: 'normal', status: 200 } } });
    const cfg = validateConfig({
      backends: [{ name: 'web1', url: o.url }],
      probes: { enabled: true, request: ['GET /ping HTTP/1.1', 'Host: app', 'Connection: close'] },
      pools: [{ name: 'api', backends: [{ name: 'api1', url: o.url }], probe: { enabled: true, path: '/health', expected_status: 204 } }],
    });
    const targets = targetsFromConfig(cfg);
    expect(targets.map((t) => [t.name, t.probe])).toEqual([
      ['web1', { path: '/ping', expectedStatus: 200, configured: true }],
      ['api1', { path: '/health', expectedStatus: 204, configured: true }],
    ]);
    const r = await runDoctor(targets, { repeat: 1 });
    expect(r.targets.map((t) => t.severity)).toEqual(['ok', 'fail']);
    expect(of(r.targets[1]!, 'status')[0]!.message).toMatch(/GET \/health answered 200 \(1 of 1\), expected 204: health probes mark the backend sick/);
    expect(o.count('/ping')).toBe(1);
    // Probes off (the default): the same mismatch is a warning.
    expect(probeFor(validateConfig({ backends: [{ name: 'x', url: o.url }] }).probes)).toEqual({ path: '/', expectedStatus: 200, configured: false });
  });

  it('fails a name that resolves to nothing, and warns when one of several addresses refuses', async () => {
    const o = await origin();
    // Injected resolver: no DNS traffic leaves the machine.
    const lookup: Lookup = async (host) => {
      if (host === 'gone.invalid') throw Object.assign(new Error('getaddrinfo ENOTFOUND gone.invalid'), { code: 'ENOTFOUND' });
      return [
        { address: '127.0.0.2', family: 4 },
        { address: '127.0.0.1', family: 4 },
      ];
    };
    const gone = await examine(targetFromUrl('http://gone.invalid:8080/'), { lookup });
    const d = of(gone, 'dns')[0]!;
    expect(d.severity).toBe('fail');
    expect(d.class).toBe('dns_error');
    expect(d.message).toMatch(/"gone.invalid" resolves to nothing \(ENOTFOUND\)/);
    expect(gone.tcp).toEqual([]);

    const two = await examine(targetFromUrl(`http://two.test:${o.port}/`), { lookup, repeat: 1 });
    expect(two.dns.addresses.map((a) => a.address)).toEqual(['127.0.0.2', '127.0.0.1']);
    const c = of(two, 'connect');
    expect(c[0]!.severity).toBe('warn');
    expect(c[0]!.message).toMatch(/^127\.0\.0\.2:\d+ \(IPv4\) fails \(ECONNREFUSED\) while another address/);
    expect(two.http!.address).toBe('127.0.0.1');
    expect(two.http!.samples[0]!.status).toBe(200);
  });

  it('states an expired certificate as a failure (measurement-level: openssl cannot date a certificate in the past)', () => {
    const t = targetFromUrl('https://localhost:8443/');
    const m = {
      target: t,
      dns: { host: 'localhost', ms: 0.1, addresses: [{ address: '127.0.0.1', family: 4 as const }] },
      tcp: [{ address: '127.0.0.1', family: 4 as const, port: 8443, ms: 0.2 }],
      tls: {
        address: '127.0.0.1', servername: 'localhost', ms: 1, protocol: 'TLSv1.3', verifyError: 'CERT_HAS_EXPIRED', sni: 'same' as const,
        cert: { subject: 'localhost', san: ['DNS:localhost'], issuer: 'Test CA', validTo: '2020-01-01T00:00:00.000Z', daysLeft: -3, fingerprint: 'x', selfSigned: false },
      },
    };
    const f = evaluate(m).filter((x) => x.check === 'tls');
    expect(f).toHaveLength(1); // expired is said once, not again as "does not verify"
    expect(f[0]!.severity).toBe('fail');
    expect(f[0]!.class).toBe('tls_certificate_error');
    expect(f[0]!.message).toMatch(/expired on 2020-01-01/);
  });
});

describe('lacquer doctor (the command)', () => {
  function run(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
    return new Promise((resolve) => {
      const p = spawn(node, [cli, 'doctor', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      p.stdout.on('data', (c: Buffer) => (out += c));
      p.stderr.on('data', (c: Buffer) => (err += c));
      p.on('close', (code) => resolve({ code, out, err }));
    });
  }

  it('the header line shows the status the probe path really answered, not the expected one (issue 11: `→ 200 [FAIL]` for a 404)', async () => {
    const o = await origin({ behaviours: { '/missing': { kind: 'error', status: 404 } } });
    const r = await run([`${o.url}/missing`, '--repeat', '1']);
    expect(r.code).toBe(2);
    expect(r.out).toMatch(/^\S+ {2}http:\/\/127\.0\.0\.1:\d+ {2}probe GET \/missing → 404 \(expected 200\) {2}\[FAIL\]$/m);
    expect(r.out).not.toMatch(/→ 200/);
  });

  it('exits 2 with failures, 1 with only warnings, 0 when all is well; --json and the human table agree', async () => {
    const good = await origin({ keepAliveTimeoutMs: 10_000 });
    const racy = await origin({ keepAliveTimeoutMs: 2000 });
    const dead = await origin();
    await dead.refuse();
    const dir = mkdtempSync(join(tmpdir(), 'lacquer-doctor-'));
    try {
      const file = (name: string, urls: string[]) => {
        const p = join(dir, name);
        writeFileSync(p, `backends:\n${urls.map((u, i) => `  - name: b${i + 1}\n    url: ${u}\n`).join('')}`);
        return p;
      };
      const all = await run(['--config', file('all.yaml', [good.url, racy.url, dead.url]), '--json', '--repeat', '1']);
      expect(all.code).toBe(2);
      const report = JSON.parse(all.out) as { exitCode: number; targets: { target: { name: string }; severity: string }[] };
      expect(report.exitCode).toBe(2);
      expect(report.targets.map((t) => [t.target.name, t.severity])).toEqual([['b1', 'ok'], ['b2', 'warn'], ['b3', 'fail']]);

      const human = await run(['--config', file('warn.yaml', [good.url, racy.url]), '--repeat', '2']);
      expect(human.code).toBe(1);
      expect(human.out).toMatch(/^b1 {2}http:\/\/127\.0\.0\.1:\d+ {2}probe GET \/ → 200 \(probes off\) {2}\[OK\]$/m);
      expect(human.out).toMatch(/^ {2}first byte +\S+ \/ \S+ \/ \S+ {2}min\/median\/max {2}\(limit 1m\)$/m);
      expect(human.out).toMatch(/^ {2}keep-alive +timeout=2s {2}\(idle 4s\)$/m);
      expect(human.out).toMatch(/^ {2}WARN keepalive {2}The origin advertises Keep-Alive: timeout=2/m);
      expect(human.out).toMatch(/2 targets: 0 failing, 1 with warnings, 1 ok → exit 1\n$/);

      const ok = await run([`${good.url}/`, '--repeat', '1']);
      expect(ok.code).toBe(0);
      expect(ok.out).toMatch(/1 target: 0 failing, 0 with warnings, 1 ok → exit 0/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses to run without a target', async () => {
    const r = await run([]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/give --config FILE .* or an origin URL/);
  });
});

// ---------------------------------------------------------------------------------------------
// TLS: certificates made now by openssl, so expiry is relative to the test run.

let hasOpenssl = true;
try {
  execFileSync('openssl', ['version'], { stdio: 'ignore' });
} catch {
  hasOpenssl = false;
  console.warn('doctor.test.ts: `openssl` not found — skipping the TLS tests (they need it to make test certificates)');
}

describe.skipIf(!hasOpenssl)('doctor against a TLS origin (openssl-made certificates)', () => {
  let dir = '';
  const cert = (name: string, cn: string, san: string, days: number): { key: Buffer; cert: Buffer; certPath: string } => {
    const key = join(dir, `${name}.key`);
    const crt = join(dir, `${name}.crt`);
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', crt, '-days', String(days), '-subj', `/CN=${cn}`, '-addext', `subjectAltName=${san}`], { stdio: 'ignore' });
    return { key: readFileSync(key), cert: readFileSync(crt), certPath: crt };
  };
  let soon: ReturnType<typeof cert>;
  let other: ReturnType<typeof cert>;
  let long: ReturnType<typeof cert>;
  const servers: https.Server[] = [];

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'lacquer-doctor-tls-'));
    soon = cert('soon', 'localhost', 'DNS:localhost,IP:127.0.0.1', 5);
    other = cert('other', 'other.test', 'DNS:other.test', 365);
    long = cert('long', 'localhost', 'DNS:localhost', 365);
  });
  afterAll(async () => {
    for (const s of servers) s.closeAllConnections();
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    rmSync(dir, { recursive: true, force: true });
  });

  async function serve(opts: https.ServerOptions): Promise<number> {
    const s = https.createServer(opts, (_req, res) => res.end('tls ok\n'));
    servers.push(s);
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    return (s.address() as AddressInfo).port;
  }

  it('warns about a certificate expiring within 14 days, with protocol, subject, SAN and issuer', async () => {
    const port = await serve({ key: soon.key, cert: soon.cert });
    const r = await examine(targetFromUrl(`https://localhost:${port}/`), { repeat: 1, ca: soon.cert });
    const t = r.tls!;
    expect(t.protocol).toMatch(/^TLSv1\.[23]$/);
    expect(t.verifyError).toBeNull();
    expect(t.cert!.subject).toBe('localhost');
    expect(t.cert!.san).toEqual(['DNS:localhost', 'IP Address:127.0.0.1']);
    expect(t.cert!.issuer).toBe('localhost');
    expect(t.cert!.daysLeft).toBeGreaterThanOrEqual(4);
    expect(t.cert!.daysLeft).toBeLessThanOrEqual(5);
    const f = of(r, 'tls');
    expect(f).toHaveLength(1);
    expect(f[0]!.severity).toBe('warn');
    expect(f[0]!.message).toMatch(/expires in [45] days/);
    expect(r.http!.samples[0]!.status).toBe(200);
    expect(r.severity).toBe('warn');
  });

  it('fails a certificate that does not verify (self-signed, not trusted) and one that does not cover the name', async () => {
    const port = await serve({ key: long.key, cert: long.cert });
    const untrusted = await examine(targetFromUrl(`https://localhost:${port}/`), { repeat: 1 });
    const u = of(untrusted, 'tls')[0]!;
    expect(u.severity).toBe('fail');
    expect(u.message).toMatch(/does not verify \(DEPTH_ZERO_SELF_SIGNED_CERT\)/);
    expect(u.fix).toContain(HINTS.tls_certificate_error);

    const wrong = await serve({ key: other.key, cert: other.cert });
    const r = await examine(targetFromUrl(`https://localhost:${wrong}/`), { repeat: 1, ca: other.cert });
    const n = of(r, 'tls').find((f) => f.message.includes('does not cover'))!;
    expect(n.severity).toBe('fail');
    expect(n.message).toMatch(/does not cover "localhost" \(ERR_TLS_CERT_ALTNAME_INVALID; SAN DNS:other.test\)/);
  });

  it('tells whether SNI matters: another certificate without SNI', async () => {
    const { createSecureContext } = await import('node:tls');
    const byName = createSecureContext({ key: long.key, cert: long.cert });
    const port = await serve({ key: other.key, cert: other.cert, SNICallback: (name, cb) => cb(null, name === 'localhost' ? byName : undefined) });
    const r = await examine(targetFromUrl(`https://localhost:${port}/`), { repeat: 1, ca: [long.cert, other.cert] });
    expect(r.tls!.sni).toBe('different');
    expect(r.tls!.cert!.subject).toBe('localhost');
    expect(of(r, 'tls')[0]!.message).toMatch(/SNI matters \(without it: another certificate\); Lacquer sends "localhost"/);

    const same = await serve({ key: long.key, cert: long.cert });
    const s = await examine(targetFromUrl(`https://localhost:${same}/`), { repeat: 1, ca: long.cert });
    expect(s.tls!.sni).toBe('same');
    expect(s.severity).toBe('ok');
  });

  it('names https spoken to a plain port (tls_protocol_error) and plain http to a TLS port', async () => {
    const plain = await origin();
    const r = await examine(targetFromUrl(`https://127.0.0.1:${plain.port}/`), { repeat: 1 });
    const t = of(r, 'tls')[0]!;
    expect(t.severity).toBe('fail');
    expect(t.class).toBe('tls_protocol_error');
    const port = await serve({ key: long.key, cert: long.cert });
    const h = await examine(targetFromUrl(`http://127.0.0.1:${port}/`), { repeat: 1 });
    expect(of(h, 'http')[0]!.message).toMatch(/If this port speaks TLS, use an https:\/\/ backend URL/);
  });
});

it('runDoctor folds the worst target into the exit code', async () => {
  const good = await origin({ keepAliveTimeoutMs: 10_000 });
  const r = await runDoctor(targetsFromConfig(config([good.url])), { repeat: 1 });
  expect([r.severity, r.exitCode]).toEqual(['ok', 0]);
  await good.refuse();
  const r2 = await runDoctor(targetsFromConfig(config([good.url])), { repeat: 1 });
  expect([r2.severity, r2.exitCode]).toEqual(['fail', 2]);
});

// TLS termination with real clients: curl over HTTP/2 and HTTP/1.1, SNI, a certificate swapped by reload
// under a running download, session resumption, min_version, and the file checks of check/doctor.
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import https from 'node:https';
import { join } from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, validateConfig } from '../src/config/load.ts';
import { filePki, startEdge, type Edge } from './edge-helpers.ts';

const run = promisify(execFile);
const NODE = process.execPath;
const CLI = join(import.meta.dirname, '..', 'src', 'cli', 'main.ts');

let e: Edge | undefined;
const pki = filePki();
afterEach(async () => {
  await e?.close();
  e = undefined;
});

const page = (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => {
  res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60' });
  res.end(`page ${req.url}\n`);
};

const port = (x: Edge) => x.proxy.listeners[0]!.port;

/** The certificate a TLS client gets for `servername` (undefined: no SNI). */
function peerCert(p: number, servername: string | undefined, extra: tls.ConnectionOptions = {}): Promise<{ cert: tls.PeerCertificate; socket: tls.TLSSocket }> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port: p, servername, ca: pki().caPem, ...extra }, () => resolve({ cert: socket.getPeerCertificate(), socket }));
    socket.once('error', reject);
  });
}

describe('TLS listeners', () => {
  it('curl gets HTTP/2 and HTTP/1.1 over TLS (ALPN); the chain verifies against the root alone; the log says the protocol', async () => {
    const { stdout } = await run('curl', ['-V']);
    expect(stdout).toMatch(/HTTP2/);
    const a = pki().issue('curl-a', ['a.test']);
    e = await startEdge(page, { listen: [{ address: '127.0.0.1:0', tls: a }] });
    const p = port(e);
    expect(e.proxy.url).toBe(`https://127.0.0.1:${p}`);
    const curl = (flag: string) =>
      run('curl', ['-sS', flag, '--cacert', pki().ca, '--resolve', `a.test:${p}:127.0.0.1`, '-D', '-', '-o', '/dev/null', '-w', '%{http_version} %{ssl_verify_result}', `https://a.test:${p}/hello`]);
    const h2 = await curl('--http2');
    expect(h2.stdout).toMatch(/^HTTP\/2 200/);
    expect(h2.stdout).toMatch(/cache-status: lacquer; fwd=uri-miss/);
    expect(h2.stdout.trim().endsWith('2 0')).toBe(true);
    const h1 = await curl('--http1.1');
    expect(h1.stdout).toMatch(/^HTTP\/1\.1 200/);
    expect(h1.stdout).toMatch(/cache-status: lacquer; hit/);
    expect(e.count('/hello')).toBe(1);
    await expect.poll(() => e!.log.access().map((l) => l.protocol)).toEqual(['HTTP/2.0', 'HTTP/1.1']);
    expect(e.log.access()[0]!.client).toBe('127.0.0.1');
  });

  it('SNI picks the certificate whose names cover the host; unknown and absent names get the first', async () => {
    const a = pki().issue('sni-a', ['a.test']);
    const b = pki().issue('sni-b', ['b.test', '*.b.test']);
    e = await startEdge(page, { listen: [{ address: '127.0.0.1:0', tls: { certificates: [a, b] } }] });
    const p = port(e);
    const cn = async (name: string | undefined) => {
      const { cert, socket } = await peerCert(p, name, { rejectUnauthorized: false });
      socket.destroy();
      return cert.subject.CN;
    };
    expect(await cn('a.test')).toBe('a.test');
    expect(await cn('b.test')).toBe('b.test');
    expect(await cn('www.b.test')).toBe('b.test');
    expect(await cn('other.test')).toBe('a.test');
    expect(await cn(undefined)).toBe('a.test');
    // curl verifies the name it asked for against what it got.
    const { stdout } = await run('curl', ['-sS', '--cacert', pki().ca, '--resolve', `www.b.test:${p}:127.0.0.1`, `https://www.b.test:${p}/x`]);
    expect(stdout).toBe('page /x\n');
  });

  it('a certificate swapped by reload: new handshakes get it while a long download on an old connection completes', { timeout: 30_000 }, async () => {
    const first = pki().issue('swap', ['a.test']);
    const chunk = Buffer.alloc(64 * 1024, 'x');
    const CHUNKS = 30;
    e = await startEdge(
      (req, res) => {
        if (req.url !== '/long') return page(req, res);
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'cache-control': 'no-store', 'content-length': String(chunk.length * CHUNKS) });
        let n = 0;
        const t = setInterval(() => {
          res.write(chunk);
          if (++n === CHUNKS) {
            clearInterval(t);
            res.end();
          }
        }, 50);
        res.on('close', () => clearInterval(t));
      },
      { listen: [{ address: '127.0.0.1:0', tls: first }] },
      { file: join(pki().dir, 'swap.json') },
    );
    const p = port(e);
    const before = (await peerCert(p, 'a.test')).cert.fingerprint256;
    let received = 0;
    let oldCert = '';
    const download = new Promise<number>((resolve, reject) => {
      const req = https.get({ host: '127.0.0.1', port: p, path: '/long', servername: 'a.test', ca: pki().caPem, agent: false }, (res) => {
        oldCert = (res.socket as tls.TLSSocket).getPeerCertificate().fingerprint256;
        res.on('data', (d: Buffer) => (received += d.length));
        res.on('end', () => resolve(received));
        res.on('error', reject);
      });
      req.on('error', reject);
    });
    await expect.poll(() => received, { timeout: 10_000 }).toBeGreaterThan(0);
    // Renew: new key and certificate written over the same files, then reload.
    const renewed = pki().issue('swap-next', ['a.test']);
    writeFileSync(first.cert, (await import('node:fs')).readFileSync(renewed.cert));
    writeFileSync(first.key, (await import('node:fs')).readFileSync(renewed.key));
    const r = await e.proxy.config.reload();
    expect(r.ok).toBe(true);
    expect(r.ok && r.warnings).toEqual([]);
    const after = (await peerCert(p, 'a.test')).cert.fingerprint256;
    expect(after).not.toBe(before);
    expect(received).toBeLessThan(chunk.length * CHUNKS); // the download was still running at the swap
    expect(await download).toBe(chunk.length * CHUNKS);
    expect(oldCert).toBe(before);
  });

  it('a reload whose certificate file is broken is refused and the running certificate stays', async () => {
    const c = pki().issue('broken', ['a.test']);
    e = await startEdge(page, { listen: [{ address: '127.0.0.1:0', tls: c }] }, { file: join(pki().dir, 'broken.json') });
    const before = (await peerCert(port(e), 'a.test')).cert.fingerprint256;
    writeFileSync(c.cert, 'not a certificate\n');
    const r = await e.proxy.config.reload();
    expect(r.ok).toBe(false);
    expect(!r.ok && r.problems?.join('\n')).toMatch(/listen\.0\.tls\.cert: ".*broken\.pem" — .*holds no PEM certificate/);
    expect((await peerCert(port(e), 'a.test')).cert.fingerprint256).toBe(before);
  });

  it('session resumption: a later connection resumes the first one’s TLS session, also after a certificate reload', async () => {
    e = await startEdge(page, { listen: [{ address: '127.0.0.1:0', tls: pki().issue('resume', ['a.test']) }] }, { file: join(pki().dir, 'resume.json') });
    const p = port(e);
    const session = await new Promise<Buffer>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port: p, servername: 'a.test', ca: pki().caPem });
      s.once('session', (sess: Buffer) => {
        resolve(sess);
        s.end();
      });
      // TLS 1.3 sends the ticket after the handshake, when the client reads.
      s.on('data', () => undefined);
      s.once('secureConnect', () => s.write('GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n'));
      s.once('error', reject);
    });
    const resumed = async () => {
      const { socket } = await peerCert(p, 'a.test', { session });
      const r = socket.isSessionReused();
      socket.destroy();
      return r;
    };
    expect(await resumed()).toBe(true);
    expect((await e.proxy.config.reload()).ok).toBe(true);
    expect(await resumed()).toBe(true);
  });

  it('min_version TLSv1.3 refuses a client that speaks at most TLS 1.2; the default accepts it with an intermediate cipher', async () => {
    const c = pki().issue('v13', ['a.test']);
    e = await startEdge(page, { listen: [{ address: '127.0.0.1:0', tls: { certificates: [c], min_version: 'TLSv1.3' } }, { address: '127.0.0.1:0', tls: c }] });
    await expect(peerCert(port(e), 'a.test', { maxVersion: 'TLSv1.2' })).rejects.toThrow();
    const ok = await peerCert(e.proxy.listeners[1]!.port, 'a.test', { maxVersion: 'TLSv1.2' });
    expect(ok.socket.getProtocol()).toBe('TLSv1.2');
    expect(ok.socket.getCipher().name).toBe('ECDHE-ECDSA-AES128-GCM-SHA256');
    ok.socket.destroy();
    // No TLS 1.0/1.1, whatever the client offers.
    await expect(peerCert(e.proxy.listeners[1]!.port, 'a.test', { maxVersion: 'TLSv1.1', minVersion: 'TLSv1' })).rejects.toThrow();
  });
});

describe('certificate checks', () => {
  it('a key that does not match its certificate is a config problem naming the path', () => {
    const a = pki().issue('mis-a', ['a.test']);
    const b = pki().issue('mis-b', ['b.test']);
    const bad = { backends: [{ name: 'app', url: 'http://127.0.0.1:1' }], listen: [{ address: '127.0.0.1:0', tls: { cert: a.cert, key: b.key } }] };
    let err: unknown;
    try {
      validateConfig(bad);
    } catch (x) {
      err = x;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems).toEqual([expect.objectContaining({ path: 'listen.0.tls.key', received: JSON.stringify(b.key), valid: expect.stringMatching(/is not the key of .*mis-a\.pem/) })]);
    expect(() => validateConfig({ ...bad, listen: [{ address: '127.0.0.1:0', tls: { cert: join(pki().dir, 'missing.pem'), key: b.key } }] })).toThrow(/listen\.0\.tls\.cert: .*cannot be read \(ENOENT\)/);
  });

  it('lacquer check warns about a certificate expiring within 14 days; lacquer doctor reports listener certificates', async () => {
    const soon = pki().issue('soon', ['soon.test'], 5);
    const fine = pki().issue('fine', ['fine.test'], 20);
    const file = join(pki().dir, 'check.yaml');
    writeFileSync(file, JSON.stringify({ backends: [{ name: 'app', url: 'http://127.0.0.1:1' }], listen: ['127.0.0.1:6081', { address: '127.0.0.1:8443', tls: { certificates: [soon, fine] } }] }));
    const check = await run(NODE, [CLI, 'check', '-c', file]);
    expect(check.stdout).toBe('ok\n');
    expect(check.stderr).toMatch(/warning: listener 127\.0\.0\.1:8443: certificate .*soon\.pem \("soon\.test"\) expires on \d{4}-\d\d-\d\d, in [45] days/);
    expect(check.stderr).not.toMatch(/fine\.pem/);
    const doctor = await run(NODE, [CLI, 'doctor', '-c', file, '--repeat', '1']).catch((x: { stdout: string; code: number }) => x);
    expect(doctor.stdout).toMatch(/listener certificates\n {2}WARN 127\.0\.0\.1:8443 {2}.*soon\.pem\n.*"soon\.test" for soon\.test, issuer "Lacquer Test Intermediate", chain of 2, expires/);
    expect(doctor.stdout).toMatch(/ok {3}127\.0\.0\.1:8443 {2}.*fine\.pem/);
  });
});

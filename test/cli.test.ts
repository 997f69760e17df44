// The command line as an operator runs it: `check` and `serve` as real processes, and `npx lacquer`.
import { spawn } from 'node:child_process';
import net from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, onTestFinished } from 'vitest';
import { lacquer, NODE, ROOT, waitFor } from './spawn-node.ts';

const dir = mkdtempSync(join(tmpdir(), 'lacquer-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

const BROKEN = `listen: 127.0.0.1:0
cache:
  memroy: 1GiB
  grace: 5 minutes
limits:
  request_body_size: lots
timeouts:
  connect: \${LACQUER_TEST_UNSET_VARIABLE}
backends:
  - name: app1
    url: ftp://127.0.0.1:9001/path
`;

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Every problem of BROKEN, as `path: received value — what is valid` (the list of valid keys grows with the schema). */
const BROKEN_LINES: RegExp[] = [
  new RegExp(`^${escape('timeouts.connect: "${LACQUER_TEST_UNSET_VARIABLE}" — environment variable LACQUER_TEST_UNSET_VARIABLE set (or ${LACQUER_TEST_UNSET_VARIABLE:-default})')}$`),
  /^cache\.memroy: "1GiB" — not a setting here; valid keys: memory, [a-z_, ]*grace, keep, default_ttl, [a-z_, ]*coalesce_wait[a-z_, ]*$/,
  new RegExp(`^${escape('cache.grace: "5 minutes" — a duration like 250ms, 3.5s, 10m, 1h, 1d (or 0)')}$`),
  new RegExp(`^${escape('limits.request_body_size: "lots" — a size like 512B, 64KiB, 256MiB, 1GiB (or a number of bytes)')}$`),
  new RegExp(`^${escape('backends.0.url: "ftp://127.0.0.1:9001/path" — an origin URL like http://127.0.0.1:9001 or https://app.internal (scheme, host and port only)')}$`),
];

function problemLines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => / — /.test(l));
}

/** Each expected problem is printed exactly once, and nothing else. */
function expectProblems(stderr: string, expected: RegExp[]): void {
  const lines = problemLines(stderr);
  expect(lines, stderr).toHaveLength(expected.length);
  for (const re of expected) expect(lines.filter((l) => re.test(l)), `${re}\n${stderr}`).toHaveLength(1);
}

describe('lacquer check', () => {
  it('uses a Node that strips types (>= 22.18)', () => {
    const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
    if (major > 22 || (major === 22 && minor >= 18)) expect(NODE).toBe(process.execPath);
    else expect(NODE).toMatch(/node_modules\/\.bin\/node$/);
  });

  it('prints ok and exits 0 for examples/lacquer.yaml', async () => {
    const r = await lacquer(['check', '-c', 'examples/lacquer.yaml']).exited;
    expect([r.code, r.stdout, r.stderr]).toEqual([0, 'ok\n', '']);
  });

  it('prints every problem as `path: received value — what is valid` and exits 1', async () => {
    const p = file('broken.yaml', BROKEN);
    const r = await lacquer(['check', '-c', p], { env: { LACQUER_TEST_UNSET_VARIABLE: undefined } }).exited;
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr.split('\n')[0]).toBe(`${p}: ${BROKEN_LINES.length} problems`);
    expectProblems(r.stderr, BROKEN_LINES);
  });

  it('reports missing backends, and an unreadable file', async () => {
    const p = file('nobackends.yaml', 'listen: 127.0.0.1:0\n');
    const r = await lacquer(['check', '-c', p]).exited;
    expect(r.code).toBe(1);
    expectProblems(r.stderr, [/^backends: \(missing\) — .*backend/]);
    const empty = await lacquer(['check', '-c', file('empty-list.yaml', 'backends: []\n')]).exited;
    expectProblems(empty.stderr, [/^backends: \[\] — at least one backend/]);
    const missing = await lacquer(['check', '-c', join(dir, 'does-not-exist.yaml')]).exited;
    expect(missing.code).toBe(1);
    expect(problemLines(missing.stderr)).toEqual([`(file): ${join(dir, 'does-not-exist.yaml')} (ENOENT) — a readable YAML file`]);
  });

  it('an environment variable that is set is substituted', async () => {
    const p = file('env.yaml', 'backends:\n  - name: app1\n    url: http://127.0.0.1:${LACQUER_TEST_PORT}\n');
    const r = await lacquer(['check', '-c', p], { env: { LACQUER_TEST_PORT: '9001' } }).exited;
    expect([r.code, r.stdout]).toEqual([0, 'ok\n']);
  });
});

describe('lacquer serve', () => {
  it('refuses to start on a broken config with the same messages, exit 1', async () => {
    const p = file('broken-serve.yaml', BROKEN);
    const r = await lacquer(['serve', '-c', p], { env: { LACQUER_TEST_UNSET_VARIABLE: undefined } }).exited;
    expect(r.code).toBe(1);
    expectProblems(r.stderr, BROKEN_LINES);
    expect(r.stdout).not.toMatch(/listening/);
  });

  it.each([
    ['the default workers', [], availableParallelism()],
    ['workers: 1', ['--workers', '1'], 1],
  ])('logs one start line (on stderr: operational messages) with the listen address and the backends, and stops on SIGTERM with exit 0 (%s)', async (_name, flags, n) => {
    const p = file('ok.yaml', 'listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\nbackends:\n  - name: app1\n    url: http://127.0.0.1:9\n  - name: app2\n    url: http://127.0.0.1:10\n');
    const s = lacquer(['serve', '-c', p, ...flags]);
    // A failed assertion must not leave the server (and, with workers, its primary and workers) running.
    onTestFinished(() => void s.child.kill('SIGKILL'));
    await waitFor(() => s.stderr().includes('listening'), 15_000, () => `stdout ${s.stdout()} stderr ${s.stderr()}`);
    const lines = s.stderr().trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const start = lines.filter((l) => String(l.msg).includes('listening'));
    expect(start).toHaveLength(1);
    expect(start[0]!.listen).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(start[0]!.listen).not.toBe('127.0.0.1:0');
    // one entry per backend naming it and its URL (the pool prefix, if any, is the pools' business)
    const backends = start[0]!.backends as string[];
    expect(backends).toHaveLength(2);
    expect(backends[0]).toMatch(/\bapp1\b.*http:\/\/127\.0\.0\.1:9$/);
    expect(backends[1]).toMatch(/\bapp2\b.*http:\/\/127\.0\.0\.1:10$/);
    // With more than one worker (the default on a multi-core machine), the primary's line for the instance (port 0: the cluster balances).
    const admin = start[0]!.admin as string;
    expect(start[0]!.msg).toBe(
      n > 1
        ? `lacquer listening on ${String(start[0]!.listen)} with ${n} workers (cluster round-robin), backends ${backends.join(', ')}; admin plane and dashboard on ${admin}/`
        : `lacquer listening on ${String(start[0]!.listen)}, backends ${backends.join(', ')}`,
    );
    s.child.kill('SIGTERM');
    const r = await s.exited;
    expect([r.code, r.signal]).toEqual([0, null]);
  });
});

describe('lacquer serve, port taken', () => {
  it.each([
    ['the default workers', []],
    ['workers: 1', ['--workers', '1']],
  ])('says which address is in use instead of a stack trace, exit 1 (%s)', async (_name, flags) => {
    const taken = net.createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    const port = (taken.address() as net.AddressInfo).port;
    try {
      const p = file('taken.yaml', `listen: 127.0.0.1:${port}\nadmin:\n  listen: 127.0.0.1:0\nbackends:\n  - name: app1\n    url: http://127.0.0.1:9\n`);
      const r = await lacquer(['serve', '-c', p, ...flags]).exited;
      expect(r.code).toBe(1);
      expectProblems(r.stderr, [new RegExp(`^${escape(p)}: cannot start: listen: 127\\.0\\.0\\.1:${port} \\(EADDRINUSE\\) — a port no other process listens on$`)]);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    } finally {
      await new Promise((r) => taken.close(r));
    }
  });
});

describe('npx lacquer', () => {
  it('bin/lacquer.js runs check from the repo root', async () => {
    const r = await lacquer(['check', '-c', 'examples/lacquer.yaml'], { entry: 'bin/lacquer.js' }).exited;
    expect([r.code, r.stdout]).toEqual([0, 'ok\n']);
  });

  it('`npx lacquer check -c examples/lacquer.yaml` prints ok', async () => {
    const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn('npx', ['--offline', 'lacquer', 'check', '-c', 'examples/lacquer.yaml'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
      const guard = setTimeout(() => child.kill('SIGKILL'), 15_000);
      child.on('close', (code) => {
        clearTimeout(guard);
        resolve({ code, stdout, stderr });
      });
    });
    expect(r.stdout, r.stderr).toBe('ok\n');
    expect(r.code).toBe(0);
  });

});

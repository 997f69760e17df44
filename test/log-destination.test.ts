// A log destination must never stall serving or shutdown (issue 11 items 13 and 16). `lacquer serve` runs
// with stdout/stderr piped to a parent that then exits (the pipe breaks) or stops reading (the pipe fills):
// requests are still answered, dropped lines are counted, and SIGTERM ends the process within
// proxy.drain_timeout. Before the fix the process stayed alive, its main thread blocked in a write to the
// full pipe (or its exit waiting for a libuv worker stuck in one).
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { startOrigin, type Origin } from '../src/lab/origin.ts';
import { parseMetrics, sum } from './admin-helpers.ts';
import { NODE, ROOT, waitFor } from './spawn-node.ts';

const dir = mkdtempSync(join(tmpdir(), 'lacquer-logdest-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let origin: Origin | undefined;
const pids: number[] = [];
afterEach(async () => {
  for (const pid of pids.splice(0)) if (alive(pid)) process.kill(pid, 'SIGKILL');
  await origin?.close();
  origin = undefined;
});

/** Alive and not a zombie waiting for a reaper (the parent is gone: init reaps it when it gets to it). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(' ')[2] !== 'Z';
  } catch {
    return false;
  }
}

type Orphan = { pid: number; listen: string; parent: ReturnType<typeof spawn> };

/** Starts serve under test/fixtures/orphan-parent.ts; `exit`: the parent exits at once, `stall`: it stays and never reads. */
async function serveUnder(mode: 'exit' | 'stall', drain: string): Promise<Orphan> {
  origin = await startOrigin({ behaviours: { '*': { kind: 'normal', cacheControl: 'no-store' } } });
  const cfg = join(dir, `${mode}.yaml`);
  writeFileSync(cfg, `listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\nproxy:\n  drain_timeout: ${drain}\nbackends:\n  - name: app1\n    url: ${origin.url}\n`);
  const parent = spawn(NODE, ['test/fixtures/orphan-parent.ts', NODE, 'src/cli/main.ts', cfg, mode], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe', 'pipe'] });
  let report = '';
  let err = '';
  parent.stdio[3]!.on('data', (c: Buffer) => (report += c.toString('utf8')));
  parent.stderr!.on('data', (c: Buffer) => (err += c.toString('utf8')));
  await waitFor(() => report.includes('\n'), 10_000, () => `parent stderr: ${err}`);
  const { pid, listen } = JSON.parse(report) as { pid: number; listen: string };
  pids.push(pid);
  if (mode === 'exit') await waitFor(() => parent.exitCode !== null, 5000);
  return { pid, listen, parent };
}

async function metricsOf(adminUrl: string): Promise<Map<string, number>> {
  const r = await request(`${adminUrl}/metrics`);
  return parseMetrics(await r.body.text());
}

describe('log destination gone or stalled', () => {
  it('the parent exits (stdout/stderr pipes broken): requests are still answered, SIGTERM ends the process within drain_timeout', async () => {
    const o = await serveUnder('exit', '2s');
    const agent = new Agent();
    try {
      for (let i = 0; i < 50; i++) {
        const r = await request(`http://${o.listen}/p${i}`, { dispatcher: agent });
        await r.body.dump();
        expect(r.statusCode).toBe(200);
      }
    } finally {
      await agent.close();
    }
    expect(alive(o.pid)).toBe(true);
    const t0 = performance.now();
    process.kill(o.pid, 'SIGTERM');
    await waitFor(() => !alive(o.pid), 6000, () => 'serve still alive after SIGTERM');
    expect(performance.now() - t0).toBeLessThan(2000 + 1500); // drain_timeout plus scheduling slack
  });

  it('the parent stops reading (pipes full): serving goes on, lines are dropped and counted, SIGTERM ends the process within drain_timeout', async () => {
    const o = await serveUnder('stall', '1s');
    const agent = new Agent({ connections: 4 });
    // Long URLs make long access lines: the pipe (~200 KiB) and the 4 MiB bound fill after a few hundred requests.
    const long = 'x'.repeat(12_000);
    let ok = 0;
    const deadline = Date.now() + 30_000;
    try {
      for (let i = 0; i < 700 && Date.now() < deadline; i++) {
        const r = await request(`http://${o.listen}/${long}${i}`, { dispatcher: agent });
        await r.body.dump();
        if (r.statusCode === 200) ok++;
      }
    } finally {
      await agent.close();
    }
    expect(ok).toBe(700);
    // The admin address is in the start line, which went to the stalled pipe: find it from the proxy's own listener instead.
    const adminUrl = await findAdmin(o.pid);
    const m = await metricsOf(adminUrl);
    expect(sum(m, 'lacquer_log_lines_dropped_total')).toBeGreaterThan(0);
    const t0 = performance.now();
    process.kill(o.pid, 'SIGTERM');
    await waitFor(() => !alive(o.pid), 6000, () => 'serve still alive after SIGTERM');
    expect(performance.now() - t0).toBeLessThan(1000 + 1500);
    o.parent.kill('SIGKILL');
  }, 60_000);
});

/** The admin port of a process: the listening TCP sockets it owns, minus the proxy's, read from /proc. */
async function findAdmin(pid: number): Promise<string> {
  const inodes = new Set<string>();
  const { readdirSync, readlinkSync } = await import('node:fs');
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      // closed meanwhile
    }
  }
  const ports: number[] = [];
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length > 9 && f[3] === '0A' && inodes.has(f[9]!)) ports.push(parseInt(f[1]!.split(':')[1]!, 16));
  }
  for (const port of ports) {
    const r = await request(`http://127.0.0.1:${port}/healthz`).catch(() => undefined);
    if (!r) continue;
    const text = await r.body.text();
    if (r.statusCode === 200 && text.includes('"status"')) return `http://127.0.0.1:${port}`;
  }
  throw new Error(`no admin listener found for pid ${pid} among ports ${ports.join(', ')}`);
}

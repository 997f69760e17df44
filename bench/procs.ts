// Child processes of the benchmark: started here, tracked here, and only these are ever killed.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';

/** stopSignal: what `stop()` sends first (nginx's master stops gracefully on SIGQUIT); SIGTERM by default. */
export type Child = { name: string; proc: ChildProcess; pid: number; exited: Promise<number | null>; stopSignal: NodeJS.Signals };

const started = new Set<Child>();

export function start(name: string, cmd: string, args: string[], opts: SpawnOptions & { stopSignal?: NodeJS.Signals } = {}): Child {
  const { stopSignal = 'SIGTERM', ...spawnOpts } = opts;
  const proc = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], ...spawnOpts });
  if (proc.pid === undefined) throw new Error(`${name}: could not start ${cmd}`);
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const child: Child = { name, proc, pid: proc.pid, exited, stopSignal };
  started.add(child);
  void exited.then(() => started.delete(child));
  return child;
}

/** Resolves with the first stdout line parsed as JSON (the helper processes print `{"port":N}`). */
export function firstJsonLine<T>(c: Child, timeoutMs = 15_000): Promise<T> {
  return new Promise((resolve, reject) => {
    let buf = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`${c.name}: no startup line within ${timeoutMs} ms\n${err}`)), timeoutMs);
    c.proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    c.proc.stdout?.on('data', (d: Buffer) => {
      buf += d.toString();
      const i = buf.indexOf('\n');
      if (i < 0) return;
      clearTimeout(timer);
      try {
        resolve(JSON.parse(buf.slice(0, i)) as T);
      } catch (e) {
        reject(e as Error);
      }
    });
    void c.exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`${c.name} exited with ${code} before it was ready\n${err}`));
    });
  });
}

/** A port free right now on 127.0.0.1 (for servers that need one on the command line). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/** Polls until something accepts TCP connections on the port. */
export async function waitForPort(port: number, c: Child, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exitCode: number | null | undefined;
  void c.exited.then((code) => (exitCode = code));
  while (Date.now() < deadline) {
    if (exitCode !== undefined) throw new Error(`${c.name} exited with ${exitCode} before listening on ${port}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${c.name}: nothing listening on ${port} after ${timeoutMs} ms`);
}

function statusKiB(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** Resident memory in bytes of the process and its children (varnishd's manager + worker). */
export function rssBytes(pid: number, field: 'VmRSS' | 'VmHWM' = 'VmRSS'): number {
  let kib = statusKiB(pid, field);
  for (const c of childrenOf(pid)) kib += statusKiB(c, field);
  return kib * 1024;
}

function cpuTicks(pid: number): number {
  try {
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]);
  } catch {
    return 0;
  }
}

/** CPU time (user + system, all threads) in ms used so far by the process and its children. */
export function cpuMs(pid: number): number {
  let t = cpuTicks(pid);
  for (const c of childrenOf(pid)) t += cpuTicks(c);
  return t * 10; // USER_HZ is 100 on Linux
}

/** The kernel's start time of a pid (field 22 of /proc/<pid>/stat), so a recycled pid is never mistaken for ours. */
function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

type Proc = { pid: number; since: string };

/** The processes a child of ours started itself (nginx's workers, varnishd's cache process), recorded by pid and start time. */
function descendants(pid: number): Proc[] {
  const out: Proc[] = [];
  for (const c of childrenOf(pid)) {
    const since = startTime(c);
    if (since !== undefined) out.push({ pid: c, since }, ...descendants(c));
  }
  return out;
}

const alive = (p: Proc) => startTime(p.pid) === p.since;

function kill(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

/**
 * The child's stop signal (SIGTERM, or SIGQUIT for nginx), then SIGKILL after `graceMs`; resolves when the
 * child has exited and so have the processes it had started (a master's workers), SIGKILLed by pid if the
 * master left them behind.
 */
export async function stop(c: Child, graceMs = 5000): Promise<void> {
  if (!started.has(c)) return;
  const family = descendants(c.pid);
  c.proc.stdin?.end();
  c.proc.kill(c.stopSignal);
  const t = setTimeout(() => c.proc.kill('SIGKILL'), graceMs);
  await c.exited;
  clearTimeout(t);
  const until = Date.now() + 2000;
  while (family.some(alive) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  for (const p of family.filter(alive)) kill(p.pid, 'SIGKILL');
}

/** Stops every child this process started, by its own pid. */
export async function stopAll(): Promise<void> {
  await Promise.all([...started].map((c) => stop(c)));
}

/** Synchronous last resort (process exit handlers): SIGKILL our own children and the processes they started. */
export function killAllNow(): void {
  for (const c of started) {
    const family = descendants(c.pid);
    kill(c.pid, 'SIGKILL');
    for (const p of family) kill(p.pid, 'SIGKILL');
  }
}

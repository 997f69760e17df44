// Child processes of the benchmark, on the lab's harness (src/lab/processes.ts): one ProcessGroup spawns
// them, signals forking servers (nginx, varnishd) as a process group, and kills every one by PID when the
// bench exits. What is the bench's own is measurement: RSS and CPU time of a process and its children.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePorts, ProcessGroup, waitForPort as labWaitForPort, type Child as LabChild } from '../src/lab/processes.ts';

export type Child = {
  name: string;
  proc: LabChild['proc'];
  pid: number;
  exited: Promise<number | null>;
  lab: LabChild;
  /** The first line of stdout, read from the start (the harness's stdout flows to the log at once). */
  firstLine: Promise<string>;
};

/** The one process group of this bench run (the lab's runner has its own). */
export const group = new ProcessGroup();
/** The children's stdout/stderr logs (the lab harness writes every child's output to a file). */
export const logDir = mkdtempSync(join(tmpdir(), 'lacquer-bench-logs-'));
process.once('exit', () => rmSync(logDir, { recursive: true, force: true }));

function adapt(lab: LabChild): Child {
  const exited = lab.exited.then((c) => (typeof c === 'number' ? c : null));
  const firstLine = new Promise<string>((resolve, reject) => {
    let buf = '';
    const onData = (d: Buffer) => {
      buf += d.toString();
      const i = buf.indexOf('\n');
      if (i < 0) return;
      lab.proc.stdout?.off('data', onData);
      resolve(buf.slice(0, i));
    };
    lab.proc.stdout?.on('data', onData);
    void exited.then((code) => reject(new Error(`${lab.name} exited with ${code} before it was ready: ${readTail(lab.logFile)}`)));
  });
  firstLine.catch(() => undefined); // observed by firstJsonLine when someone waits for it
  return { name: lab.name, proc: lab.proc, pid: lab.pid, lab, exited, firstLine };
}

/** Starts a process; its stdin stays a pipe, so the bench's helpers (origin, ceiling) stop when the bench goes away. */
export function start(name: string, cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; processGroup?: boolean } = {}): Child {
  const c = group.spawn(name, cmd, args, { logFile: join(logDir, `${name}.log`), cwd: opts.cwd, env: opts.env, stdinPipe: true, group: opts.processGroup });
  if (c.pid <= 0) throw new Error(`${name}: could not start ${cmd}`);
  return adapt(c);
}

/** Resolves with the first stdout line parsed as JSON (the helper processes print `{"port":N}`). */
export async function firstJsonLine<T>(c: Child, timeoutMs = 15_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${c.name}: no startup line within ${timeoutMs} ms (log ${c.lab.logFile})`)), timeoutMs);
  });
  try {
    return JSON.parse(await Promise.race([c.firstLine, timeout])) as T;
  } finally {
    clearTimeout(timer);
  }
}

function readTail(file: string): string {
  try {
    return readFileSync(file, 'utf8').slice(-2000);
  } catch {
    return '(no log)';
  }
}

/** A port free right now on 127.0.0.1 (for servers that need one on the command line). */
export async function freePort(): Promise<number> {
  return (await freePorts(1))[0]!;
}

/** Polls until something accepts TCP connections on the port (the lab's waitForPort, with the child's log on failure). */
export function waitForPort(port: number, c: Child, timeoutMs = 15_000): Promise<void> {
  return labWaitForPort(port, timeoutMs, c.lab);
}

/** SIGTERM, then SIGKILL after `graceMs`; a process-group child is signalled as a whole. */
export async function stop(c: Child, graceMs = 5000): Promise<void> {
  c.proc.stdin?.end();
  await c.lab.stop(graceMs);
}

/** Stops every child this process started, by its own pid. */
export function stopAll(): Promise<void> {
  return group.stopAll(5000);
}

/** Synchronous last resort (process exit handlers): SIGKILL our own children and their groups. */
export function killAllNow(): void {
  group.killAllNow();
}

function statusKiB(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** The direct children (Lacquer's workers under their primary). */
export function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** Every descendant (nginx's workers, varnishd's cache process, Lacquer's workers). */
function descendants(pid: number): number[] {
  return childPids(pid).flatMap((c) => [c, ...descendants(c)]);
}

/** Resident memory in bytes of the process alone. */
export function processRssBytes(pid: number, field: 'VmRSS' | 'VmHWM' = 'VmRSS'): number {
  return statusKiB(pid, field) * 1024;
}

/** Resident memory in bytes of the process and its descendants. */
export function rssBytes(pid: number, field: 'VmRSS' | 'VmHWM' = 'VmRSS'): number {
  let kib = statusKiB(pid, field);
  for (const c of descendants(pid)) kib += statusKiB(c, field);
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

/** CPU time (user + system, all threads) in ms used so far by the process and its descendants. */
export function cpuMs(pid: number): number {
  let t = cpuTicks(pid);
  for (const c of descendants(pid)) t += cpuTicks(c);
  return t * 10; // USER_HZ is 100 on Linux
}

// Child processes of the lab (origins, proxies, the load generator), each owned by one ProcessGroup so
// that every process the lab starts is stopped by its PID: on a normal end, on an error, on a timeout
// and when the lab process itself exits. Proxies that fork (varnishd's manager and child, nginx's master
// and workers) get a process group of their own, signalled as a whole by the leader's PID.
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { createWriteStream, existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

export type Child = {
  name: string;
  pid: number;
  /** Leads a process group of its own (signalled as -pid). */
  group: boolean;
  /** Where its stdout and stderr go. */
  logFile: string;
  proc: ChildProcess;
  /** Resolves with the exit code (or the signal name) when the process has exited. */
  exited: Promise<number | string>;
  hasExited(): boolean;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process has exited. */
  stop(graceMs?: number): Promise<void>;
  /** SIGKILL at once (a crash, as the scenarios inject it). */
  kill(): Promise<void>;
};

export type SpawnOptions = {
  /** stdout and stderr go to this file (appended). */
  logFile: string;
  /** Open an IPC channel (Node children only). */
  ipc?: boolean;
  /** Keep a pipe to the child's stdin (children that stop when it closes outlive no killed parent; bench/). */
  stdinPipe?: boolean;
  /** Own process group, signalled as a whole (for forking daemons). */
  group?: boolean;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
};

export class ProcessGroup {
  readonly #children = new Set<Child>();
  readonly #onExit = () => this.killAllNow();

  constructor() {
    process.once('exit', this.#onExit);
  }

  spawn(name: string, command: string, args: string[], opts: SpawnOptions): Child {
    const log = createWriteStream(opts.logFile, { flags: 'a' });
    const stdin = opts.stdinPipe ? 'pipe' : 'ignore';
    const stdio: StdioOptions = opts.ipc ? [stdin, 'pipe', 'pipe', 'ipc'] : [stdin, 'pipe', 'pipe'];
    const proc = spawn(command, args, { stdio, detached: opts.group ?? false, cwd: opts.cwd, env: opts.env ?? process.env });
    proc.stdout?.pipe(log, { end: false });
    proc.stderr?.pipe(log, { end: false });
    let exitedFlag = false;
    const exited = new Promise<number | string>((resolve) => {
      proc.once('exit', (code, signal) => {
        exitedFlag = true;
        this.#children.delete(child);
        resolve(code ?? signal ?? 'unknown');
      });
      proc.once('error', (err) => {
        exitedFlag = true;
        this.#children.delete(child);
        log.write(`spawn error: ${err.message}\n`);
        resolve('spawn-error');
      });
    });
    void exited.then(() => setTimeout(() => log.end(), 50));
    const signal = (sig: NodeJS.Signals) => {
      if (exitedFlag || proc.pid === undefined) return;
      try {
        if (opts.group) process.kill(-proc.pid, sig);
        else process.kill(proc.pid, sig);
      } catch {
        // already gone
      }
    };
    const child: Child = {
      name,
      pid: proc.pid ?? -1,
      group: opts.group ?? false,
      logFile: opts.logFile,
      proc,
      exited,
      hasExited: () => exitedFlag,
      async stop(graceMs = 3000) {
        if (exitedFlag) return;
        signal('SIGTERM');
        const t = setTimeout(() => signal('SIGKILL'), graceMs);
        await exited;
        clearTimeout(t);
        // The leader may exit before its group: make sure no member outlives it.
        if (opts.group) signalGroupLeftovers(proc.pid);
      },
      async kill() {
        signal('SIGKILL');
        await exited;
        if (opts.group) signalGroupLeftovers(proc.pid);
      },
    };
    this.#children.add(child);
    return child;
  }

  /** Stops every child still running (SIGTERM, then SIGKILL). */
  async stopAll(graceMs = 3000): Promise<void> {
    await Promise.all([...this.#children].map((c) => c.stop(graceMs)));
  }

  /** Synchronous last resort (process exit): SIGKILL to every child still running. */
  killAllNow(): void {
    for (const c of this.#children) {
      if (c.pid <= 0) continue;
      try {
        process.kill(c.pid, 'SIGKILL');
      } catch {
        // gone
      }
      if (c.group) signalGroupLeftovers(c.pid);
    }
    this.#children.clear();
  }

  /** Stop watching the lab process's exit (after stopAll). */
  dispose(): void {
    process.off('exit', this.#onExit);
  }
}

function signalGroupLeftovers(pgid: number | undefined): void {
  if (pgid === undefined || pgid <= 0) return;
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch {
    // no member left
  }
}

/** Resolves when something accepts TCP connections on host:port; rejects after `timeoutMs` or if `child` exits. */
export async function waitForPort(port: number, timeoutMs: number, child?: Child, host = '127.0.0.1'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child?.hasExited()) throw new Error(`${child.name} exited before listening on ${host}:${port}: ${logTail(child.logFile)}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ port, host });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
      s.setTimeout(500, () => {
        s.destroy();
        resolve(false);
      });
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on ${host}:${port} after ${timeoutMs} ms${child ? ` (${child.name})` : ''}`);
}

/** The last lines of a log file on one line, for an error message. */
export function logTail(file: string, lines = 5): string {
  try {
    return readFileSync(file, 'utf8').trim().split('\n').slice(-lines).join(' | ').slice(0, 1000) || '(empty log)';
  } catch {
    return '(no log)';
  }
}

function tryListen(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(undefined));
    srv.listen(port, '127.0.0.1', () => {
      const a = srv.address();
      srv.close(() => resolve(typeof a === 'object' && a ? a.port : undefined));
    });
  });
}

/** `n` free ports on 127.0.0.1: base..base+n-1 when all of them are free (stable config files), else ephemeral ones. */
export async function freePorts(n: number, base?: number): Promise<number[]> {
  if (base !== undefined && base > 0) {
    const wanted = Array.from({ length: n }, (_, i) => base + i);
    const got = await Promise.all(wanted.map((p) => tryListen(p)));
    if (got.every((p) => p !== undefined)) return wanted;
  }
  // Hold all n listeners at once so the kernel hands out n distinct ports.
  const servers = await Promise.all(
    Array.from({ length: n }, () => new Promise<net.Server>((resolve, reject) => {
      const srv = net.createServer();
      srv.once('error', reject);
      srv.listen(0, '127.0.0.1', () => resolve(srv));
    })),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

/** Absolute path of an executable found on PATH or in the sbin directories Debian installs daemons to. */
export function which(cmd: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter), '/usr/sbin', '/sbin', '/usr/local/sbin'];
  for (const d of dirs) {
    if (!d) continue;
    const p = path.join(d, cmd);
    if (existsSync(p)) return p;
  }
  return undefined;
}

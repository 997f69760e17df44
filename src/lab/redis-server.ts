// A throwaway redis-server for tests and the lab: a free port on 127.0.0.1, its own temp dir (removed at
// stop), no persistence, stopped by PID. `restart` keeps the port (what a Redis restart looks like to clients).
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

export type RedisServer = {
  url: string;
  port: number;
  /** Stops it (SIGTERM, then SIGKILL after 2 s); `hard`: SIGKILL at once, like a crash. */
  stop(hard?: boolean): Promise<void>;
  /** Starts it again on the same port (empty: it keeps no data). */
  start(): Promise<void>;
  /** SIGSTOP / SIGCONT: Redis hangs with its sockets open (slower than any timeout). */
  pause(): void;
  resume(): void;
  /** Stops it and removes its directory. */
  close(): Promise<void>;
};

/** Where `redis-server` is on PATH, if anywhere (CI installs it). */
export function redisServerPath(): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    const p = path.join(dir, 'redis-server');
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect(port, '127.0.0.1');
    let buf = '';
    sock.setTimeout(500, () => (sock.destroy(), resolve(false)));
    sock.on('error', () => resolve(false));
    sock.on('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d) => {
      buf += d.toString();
      if (buf.includes('\r\n')) {
        sock.destroy();
        resolve(buf.startsWith('+PONG'));
      }
    });
  });
}

export async function startRedisServer(opts: { maxmemoryPolicy?: string } = {}): Promise<RedisServer> {
  const bin = redisServerPath();
  if (!bin) throw new Error('redis-server not found on PATH (apt-get install redis-server)');
  const dir = mkdtempSync(path.join(tmpdir(), 'lacquer-redis-'));
  const port = await freePort();
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  const start = async () => {
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--logfile', '', '--loglevel', 'warning'];
    if (opts.maxmemoryPolicy) args.push('--maxmemory-policy', opts.maxmemoryPolicy);
    const c = spawn(bin, args, { stdio: 'ignore' });
    child = c;
    exited = new Promise((resolve) => c.once('exit', () => resolve()));
    for (let i = 0; i < 100; i++) {
      if (await ping(port)) return;
      if (c.exitCode !== null) throw new Error(`redis-server exited with ${c.exitCode}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error('redis-server did not answer PING within 5 s');
  };
  const stop = async (hard = false) => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    if (c.pid) process.kill(c.pid, 'SIGCONT');
    c.kill(hard ? 'SIGKILL' : 'SIGTERM');
    const t = setTimeout(() => c.kill('SIGKILL'), 2000);
    await exited;
    clearTimeout(t);
  };
  await start();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    stop,
    start,
    pause: () => child?.pid && process.kill(child.pid, 'SIGSTOP'),
    resume: () => child?.pid && process.kill(child.pid, 'SIGCONT'),
    async close() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export type RedisSentinel = { port: number; url(masterName: string): string; close(): Promise<void> };

/** A redis-server in Sentinel mode watching `master` as `mymaster` (quorum 1), on a free port. */
export async function startRedisSentinel(master: RedisServer): Promise<RedisSentinel> {
  const bin = redisServerPath();
  if (!bin) throw new Error('redis-server not found on PATH (apt-get install redis-server)');
  const dir = mkdtempSync(path.join(tmpdir(), 'lacquer-sentinel-'));
  const port = await freePort();
  const conf = path.join(dir, 'sentinel.conf');
  // Sentinel rewrites its config file: it lives in the temp dir.
  writeFileSync(conf, [`port ${port}`, 'bind 127.0.0.1', `dir ${dir}`, `sentinel monitor mymaster 127.0.0.1 ${master.port} 1`, 'sentinel down-after-milliseconds mymaster 2000', ''].join('\n'));
  const c = spawn(bin, [conf, '--sentinel', '--loglevel', 'warning', '--logfile', ''], { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
  let up = false;
  for (let i = 0; i < 100 && !up; i++) {
    up = await ping(port);
    if (!up) await new Promise((r) => setTimeout(r, 50));
  }
  if (!up) {
    c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    throw new Error('redis sentinel did not answer PING within 5 s');
  }
  return {
    port,
    url: (name) => `redis+sentinel://127.0.0.1:${port}/${name}`,
    async close() {
      if (c.exitCode === null && c.signalCode === null) {
        c.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// The load generator, always a separate process: wrk from Debian when installed, else autocannon.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { start, stop } from './procs.ts';

export type LoadResult = { rps: number; p50Ms: number; p99Ms: number; requests: number; errors: number; non2xx: number };
export type LoadOptions = { url: string; seconds: number; connections: number; threads: number; script?: string };
export type Generator = { kind: 'wrk' | 'autocannon'; version: string; run(o: LoadOptions): Promise<LoadResult> };

function wrkVersion(): string | undefined {
  // `wrk --version` exits 1 but prints its version; a missing binary prints nothing.
  const r = spawnSync('wrk', ['--version'], { encoding: 'utf8' });
  const m = /^wrk (\S+)/m.exec(`${r.stdout ?? ''}${r.stderr ?? ''}`);
  return m ? m[1] : undefined;
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000 };

function toMs(v: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(v.trim());
  return m ? Number(m[1]) * UNIT_MS[m[2]] : NaN;
}

export function parseWrk(out: string): LoadResult {
  const num = (re: RegExp) => {
    const m = re.exec(out);
    return m ? Number(m[1]) : 0;
  };
  const lat = (pct: string) => {
    const m = new RegExp(`^\\s+${pct}%\\s+(\\S+)`, 'm').exec(out);
    return m ? toMs(m[1]) : NaN;
  };
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  return {
    rps: num(/^Requests\/sec:\s+([\d.]+)/m),
    p50Ms: lat('50'),
    p99Ms: lat('99'),
    requests: num(/^\s+(\d+) requests in/m),
    errors: sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0,
    non2xx: num(/Non-2xx or 3xx responses: (\d+)/),
  };
}

async function collect(name: string, cmd: string, args: string[], seconds: number): Promise<string> {
  const c = start(name, cmd, args);
  let out = '';
  let err = '';
  c.proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  c.proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  // Bounded: the generator gets its duration plus a margin, then it is stopped.
  const t = setTimeout(() => void stop(c, 1000), (seconds + 15) * 1000);
  const code = await c.exited;
  clearTimeout(t);
  if (code !== 0) throw new Error(`${name} exited with ${code}: ${err || out}`);
  return out;
}

const wrk = (version: string): Generator => ({
  kind: 'wrk',
  version,
  async run(o) {
    const args = [`-t${o.threads}`, `-c${o.connections}`, `-d${o.seconds}s`, '--latency', '--timeout', '5s'];
    if (o.script) args.push('-s', o.script);
    return parseWrk(await collect('wrk', 'wrk', [...args, o.url], o.seconds));
  },
});

const autocannon = (): Generator => {
  const require = createRequire(import.meta.url);
  const bin = require.resolve('autocannon/autocannon.js');
  const version = (require('autocannon/package.json') as { version: string }).version;
  return {
    kind: 'autocannon',
    version,
    async run(o) {
      if (o.script) throw new Error('autocannon: request scripts are wrk-only');
      const out = await collect('autocannon', process.execPath, [bin, '-c', String(o.connections), '-d', String(o.seconds), '-j', o.url], o.seconds);
      const r = JSON.parse(out) as { requests: { average: number; total: number }; latency: { p50: number; p99: number }; errors: number; timeouts: number; non2xx: number };
      return { rps: r.requests.average, p50Ms: r.latency.p50, p99Ms: r.latency.p99, requests: r.requests.total, errors: r.errors + r.timeouts, non2xx: r.non2xx };
    },
  };
};

export function pickGenerator(force?: string): Generator {
  const v = force === 'autocannon' ? undefined : wrkVersion();
  if (v) return wrk(v);
  if (force === 'wrk') throw new Error('wrk is not installed: apt-get install -y wrk');
  return autocannon();
}

// Varnish as the fourth column, when installed: shipped defaults (builtin VCL, so `no-store` answers
// become hit-for-miss passes), `-s malloc`, in front of the same origin.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { freePort, start, waitForPort, type Child } from './procs.ts';

export const VARNISH_HINT = 'Varnish is not installed, so its column is skipped. To add it: apt-get install -y varnish';

export function varnishVersion(): string | undefined {
  const r = spawnSync('varnishd', ['-V'], { encoding: 'utf8' });
  const m = /varnish-([\d.]+)/.exec(`${r.stdout ?? ''}${r.stderr ?? ''}`);
  return m ? m[1] : undefined;
}

export async function startVarnish(dir: string, originPort: number, memory: string): Promise<{ child: Child; port: number }> {
  const port = await freePort();
  const child = start('varnishd', 'varnishd', [
    '-F', // foreground: the pid we hold is the manager, and SIGTERM stops manager and worker
    '-n', join(dir, 'varnish'),
    '-a', `127.0.0.1:${port}`,
    '-b', `127.0.0.1:${originPort}`,
    '-s', `malloc,${memory}`,
    '-T', 'none',
  ]);
  child.proc.stdout?.resume();
  child.proc.stderr?.resume();
  await waitForPort(port, child);
  return { child, port };
}

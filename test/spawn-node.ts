// Spawning Lacquer's CLI as a real process. The sources need Node >= 22.18 (type stripping): use the Node
// running the tests when it qualifies (Node 24 under vitest via npm scripts), else the project's own.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));

function supportsTypeStripping(version: string): boolean {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  return major > 22 || (major === 22 && minor >= 18);
}

export const NODE = supportsTypeStripping(process.versions.node) ? process.execPath : `${ROOT}node_modules/.bin/node`;
if (!existsSync(NODE)) throw new Error(`no Node >= 22.18 found (tried ${NODE})`);

export type Run = { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; ms: number };

export type Spawned = { child: ChildProcess; stdout(): string; stderr(): string; exited: Promise<Run> };

/** Starts `node src/cli/main.ts ...args` in the repo root; `exited` resolves (never rejects) when it ends. */
export function lacquer(args: string[], o: { env?: NodeJS.ProcessEnv; timeoutMs?: number; entry?: string } = {}): Spawned {
  const started = performance.now();
  const child = spawn(NODE, [o.entry ?? 'src/cli/main.ts', ...args], { cwd: ROOT, env: { ...process.env, ...o.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString('utf8')));
  child.stderr!.on('data', (c: Buffer) => (err += c.toString('utf8')));
  const guard = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 10_000);
  const exited = new Promise<Run>((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(guard);
      resolve({ code, signal, stdout: out, stderr: err, ms: performance.now() - started });
    });
  });
  return { child, stdout: () => out, stderr: () => err, exited };
}

/** Waits until `pred` holds (bounded); `why` adds context (e.g. the child's stderr) to the failure. */
export async function waitFor(pred: () => boolean, ms = 5000, why?: () => string): Promise<void> {
  for (let t = 0; t < ms; t += 20) {
    if (pred()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  if (!pred()) throw new Error(`condition not reached in ${ms} ms${why ? `: ${why()}` : ''}`);
}

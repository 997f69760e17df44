import { fileURLToPath } from 'node:url';

// The V8 flags and allocator settings Lacquer runs with (issue 12 part 3, memory within its bound).
//
// The young generation's size.
// V8 sizes the young generation when the process starts and lets it grow to 64 MiB per semi-space on a
// large machine; a proxy allocates fast enough to reach that, so an idle-looking process carried 128 MiB of
// new space (BENCHMARKS.md "Memory"). The flag cannot be changed from inside a running process
// (`v8.setFlagsFromString('--max-semi-space-size=4')` after start still let the new space reach 64 MiB), so:
//   - `lacquer serve` re-executes itself once with the flag (same pid: process.execve), unless the operator
//     chose a size (a flag or NODE_OPTIONS);
//   - the primary of `workers: N` passes it to the workers it forks (workers/primary.ts).
//
// glibc's malloc arenas. Bodies and socket reads are ArrayBuffers from malloc; glibc gives threads their own
// arenas (up to 8 per core), and memory freed in an arena stays in the process. Two arenas measured 15–30 MiB
// less RSS with a full cache after churn (BENCHMARKS.md "Memory"); one arena saved more, but puts every
// thread (the libuv pool's zlib, fs and dns; V8's background GC) behind the event loop's arena lock, a cost
// this machine was too noisy to measure. The environment is read when the process starts, so it is set
// by the same re-exec; workers inherit it from the primary. Other allocators ignore it.

/** MiB per semi-space: 16 measured 90–138 MiB less RSS under load at the same CPU per request (BENCHMARKS.md). */
export const SEMI_SPACE_MIB = 16;
const FLAG = '--max-semi-space-size';

/**
 * MiB per semi-space for the primary of `workers: N`: it handles small coordination messages (and a large
 * body now and then, passed on at once), so a young generation sized for a proxy only grew its RSS
 * (measured 116 → 209 MiB during the bench's fill with 16; BENCHMARKS.md "Workers: the miss path").
 */
export const PRIMARY_SEMI_SPACE_MIB = 1;
/**
 * Set in the environment by the re-exec: `added` when the semi-space flag is Lacquer's (not the operator's),
 * `primary` once the primary replaced it with its own (workers/primary.ts gives the workers theirs).
 */
export const HEAP_MARK = 'LACQUER_HEAP_FLAGS';

/** Allocator settings added to the environment unless the operator set them. */
export const MALLOC_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '2' };

// Node's compile cache (NODE_COMPILE_CACHE): with it, a start reads each module's type-stripped source and
// V8 code cache from disk instead of loading the TypeScript stripper (amaro, a WebAssembly build of swc) and
// stripping ~500 files. Measured on the 2-core development machine: idle RSS 121 → 107 MiB per process.
// Entries are checked against the source's hash, so an edited file is stripped again; a directory that
// cannot be written (a read-only image) only loses the saving. Kept beside the installed packages, where
// tools keep their caches, not in the temp directory; the operator's NODE_COMPILE_CACHE or
// NODE_DISABLE_COMPILE_CACHE wins.
const COMPILE_CACHE_DIR = fileURLToPath(new URL('../../node_modules/.cache/lacquer-compile', import.meta.url));

/** The environment settings Lacquer adds for `serve` unless the operator set them (or turned the compile cache off). */
export function addedEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  const added: Record<string, string> = {};
  for (const [k, v] of Object.entries(MALLOC_ENV)) if (env[k] === undefined) added[k] = v;
  if (env.NODE_COMPILE_CACHE === undefined && env.NODE_DISABLE_COMPILE_CACHE === undefined) added.NODE_COMPILE_CACHE = COMPILE_CACHE_DIR;
  return added;
}

/** Whether the operator already chose a semi-space size (a node flag, or NODE_OPTIONS). */
export function semiSpaceChosen(execArgv: readonly string[], nodeOptions: string | undefined): boolean {
  return [...execArgv, ...(nodeOptions ?? '').split(/\s+/)].some((a) => a.startsWith(FLAG));
}

/**
 * The node flags with Lacquer's semi-space size added, unless one was chosen; `mark` (HEAP_MARK) says the
 * flag present is Lacquer's, which is then replaced.
 */
export function withHeapFlags(execArgv: readonly string[], nodeOptions: string | undefined, mark?: string, mib = SEMI_SPACE_MIB): string[] {
  const ours = mark === 'added' || mark === 'primary' ? execArgv.filter((a) => !a.startsWith(FLAG)) : execArgv;
  return semiSpaceChosen(ours, nodeOptions) ? [...ours] : [...ours, `${FLAG}=${mib}`];
}

/**
 * Replaces this process (same pid, same stdio) with the same script and arguments under `flags` and `env`
 * (process.execve: Node ≥ 22.15 / 23.11, not on Windows). Returns only when it could not: a platform without
 * execve, or an exec refused (a sandbox) — the process then goes on as started.
 */
function replaceProcess(flags: readonly string[], env: NodeJS.ProcessEnv): void {
  const execve = (process as { execve?: (file: string, args: string[], env: NodeJS.ProcessEnv) => never }).execve;
  if (typeof execve !== 'function') return;
  try {
    execve.call(process, process.execPath, [process.execPath, ...flags, ...process.argv.slice(1)], env);
  } catch {
    // Not replaced: go on as started.
  }
}

/**
 * Replaces this process with the same command line plus the heap flags and allocator settings (nothing
 * started yet), when some are missing. Returns when nothing was to be done or the exec could not happen:
 * the proxy then runs as it was started. Measured cost: one more Node start before the proxy loads
 * (BENCHMARKS.md).
 */
export function reexecWithHeapFlags(): void {
  const added = addedEnv(process.env);
  const chosen = semiSpaceChosen(process.execArgv, process.env.NODE_OPTIONS);
  if (Object.keys(added).length === 0 && chosen) return;
  // A debugger attached to this process would lose it at the exec: debugging runs as started.
  if (process.execArgv.some((a) => a.startsWith('--inspect'))) return;
  const env: NodeJS.ProcessEnv = { ...added, ...process.env };
  if (!chosen) env[HEAP_MARK] = 'added';
  replaceProcess(withHeapFlags(process.execArgv, process.env.NODE_OPTIONS), env);
}

/**
 * The primary of `workers: N` once it knows it is one (the configuration is read): replaces itself again
 * with its own, smaller semi-space (PRIMARY_SEMI_SPACE_MIB) when the one it has is Lacquer's. Nothing has
 * been started yet (no port bound, no worker forked). Returns when nothing was to be done or it could not
 * (the primary then runs with the workers' flags).
 */
export function reexecAsPrimary(): void {
  if (process.env[HEAP_MARK] !== 'added') return;
  replaceProcess(withHeapFlags(process.execArgv, process.env.NODE_OPTIONS, 'added', PRIMARY_SEMI_SPACE_MIB), { ...process.env, [HEAP_MARK]: 'primary' });
}

// Checks across settings, and against this host, that the schema cannot express field by field. They read
// the raw document (after `${ENV}` substitution) rather than the parsed one, so they run even when the
// schema found problems elsewhere: `check` reports everything in one pass (issue 11 item 10: a bad size
// used to hide a duplicate backend name until the size was fixed). Every value `serve` would refuse at
// start belongs here or in the schema, never in a stack trace.
import { accessSync, constants, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseDuration, parseSize } from './units.ts';

export type Problem = { path: (string | number)[]; value: unknown; valid: string };

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** The longest delay Node's timers take; a longer one fires after 1 ms, turning an interval into a busy loop. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Settings armed as timers, wherever they appear (top level, pools, routes). */
const TIMER_KEYS = new Set([
  'interval', 'timeout', 'delivery_timeout', 'delivery_backoff', 'drain_timeout', 'connect', 'first_byte', 'between_bytes',
  'idle', 'queue_timeout', 'base_ejection', 'max_ejection', 'coalesce_wait', 'deadline',
]);

/** What `workers` may be in a fleet (also said of `lacquer serve --workers`). */
export const FLEET_WORKERS = '1 or `auto` with `fleet` (a fleet instance runs one process: its workers would not share the fleet’s Redis)';

export function semanticProblems(raw: unknown): Problem[] {
  const out: Problem[] = [];
  const cfg = obj(raw);
  names(cfg, out);
  listeners(cfg, out);
  // workers (issue 12): the workers of one instance coordinate through their primary, not through the fleet's
  // Redis, so a fleet instance with several workers would share nothing with the fleet (`auto` is 1 there).
  if (cfg.fleet !== undefined && typeof cfg.workers === 'number' && cfg.workers > 1) {
    out.push({ path: ['workers'], value: cfg.workers, valid: FLEET_WORKERS });
  }
  const cache = obj(cfg.cache);
  // lru-cache refuses a zero size with a stack trace at start.
  if (cache.memory !== undefined && parseSize(cache.memory) === 0) out.push({ path: ['cache', 'memory'], value: cache.memory, valid: 'a size above 0, like 64MiB' });
  for (const [path, value] of [[['probes', 'interval'], obj(cfg.probes).interval], [['alerts', 'interval'], obj(cfg.alerts).interval]] as const) {
    if (value !== undefined && parseDuration(value) === 0) out.push({ path: [...path], value, valid: 'a duration above 0 (0 would repeat without pause)' });
  }
  arr(cfg.pools).forEach((p, i) => {
    const v = obj(obj(p).probe).interval;
    if (v !== undefined && parseDuration(v) === 0) out.push({ path: ['pools', i, 'probe', 'interval'], value: v, valid: 'a duration above 0 (0 would repeat without pause)' });
  });
  timers(cfg, [], out);
  logAccess(cfg, out);
  return out;
}

/** Backend names are unique across pools (logs, Proxy-Status next-hop and overrides name a backend alone); routes name existing pools. */
function names(cfg: Obj, out: Problem[]): void {
  const seen = new Set<string>();
  const unique = (b: unknown, path: (string | number)[]) => {
    const name = str(obj(b).name);
    if (name === undefined) return;
    if (seen.has(name)) out.push({ path, value: name, valid: 'a name not used by another backend (in any pool)' });
    seen.add(name);
  };
  arr(cfg.backends).forEach((b, i) => unique(b, ['backends', i, 'name']));
  const pools = new Set<string>();
  if (arr(cfg.backends).length > 0) pools.add('default');
  arr(cfg.pools).forEach((p, i) => {
    const name = str(obj(p).name);
    if (name !== undefined) {
      if (pools.has(name)) out.push({ path: ['pools', i, 'name'], value: name, valid: name === 'default' ? 'another name: `default` is the `backends:` list' : 'a name not used by another pool' });
      pools.add(name);
    }
    arr(obj(p).backends).forEach((b, j) => unique(b, ['pools', i, 'backends', j, 'name']));
  });
  if (pools.size === 0) out.push({ path: ['backends'], value: cfg.backends, valid: 'at least one backend (in `backends` or in a pool)' });
  arr(cfg.routes).forEach((r, i) => {
    const pool = str(obj(r).pool);
    if (pool !== undefined && !pools.has(pool)) out.push({ path: ['routes', i, 'pool'], value: pool, valid: `one of the pools: ${[...pools].join(', ') || '(none defined)'}` });
  });
}

const WILDCARD = new Set(['0.0.0.0', '::', '[::]']);

/** `host:port` → parts; undefined when the schema will complain about the shape anyway. */
function hostPort(s: string): { host: string; port: number } | undefined {
  const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(s);
  return m ? { host: m[1]!.toLowerCase(), port: Number(m[2]) } : undefined;
}

/** The admin plane may never share the public listener's address: one of them would fail to start. */
function listeners(cfg: Obj, out: Problem[]): void {
  const admin = obj(cfg.admin);
  if (admin.enabled === false) return;
  const pub = hostPort(str(cfg.listen) ?? '127.0.0.1:6081');
  const adm = hostPort(str(admin.listen) ?? '127.0.0.1:6082');
  if (!pub || !adm || pub.port === 0 || pub.port !== adm.port) return;
  const local = (h: string) => (h === 'localhost' ? '127.0.0.1' : h);
  if (local(pub.host) === local(adm.host) || WILDCARD.has(pub.host) || WILDCARD.has(adm.host)) {
    out.push({ path: ['admin', 'listen'], value: admin.listen ?? '127.0.0.1:6082', valid: `an address other than listen (${str(cfg.listen) ?? '127.0.0.1:6081'}): the admin plane never shares the public port` });
  }
}

function timers(node: unknown, path: (string | number)[], out: Problem[]): void {
  if (Array.isArray(node)) return node.forEach((v, i) => timers(v, [...path, i], out));
  if (!node || typeof node !== 'object') return;
  for (const [k, v] of Object.entries(node)) {
    const ms = TIMER_KEYS.has(k) ? parseDuration(v) : undefined;
    if (ms !== undefined && ms > MAX_TIMER_MS) out.push({ path: [...path, k], value: v, valid: 'at most 24d (the longest timer Node.js can set)' });
    else timers(v, [...path, k], out);
  }
}

/** A log file goes in a directory that exists and that this user may write to: Lacquer never creates directories (issue 11 item 12). */
function logAccess(cfg: Obj, out: Problem[]): void {
  const dest = str(obj(cfg.log).access);
  if (dest === undefined || dest === 'stdout' || dest === 'stderr' || dest === 'off' || dest === '') return;
  const problem = (valid: string) => out.push({ path: ['log', 'access'], value: dest, valid });
  const file = resolve(dest);
  try {
    if (statSync(file).isDirectory()) return void problem('a file path, not a directory (or stdout, stderr, off)');
    accessSync(file, constants.W_OK);
    return;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return void problem('a file this user may append to (or stdout, stderr, off)');
  }
  const dir = dirname(file);
  try {
    if (!statSync(dir).isDirectory()) return void problem(`a path in an existing directory (${dir} is not a directory)`);
    accessSync(dir, constants.W_OK);
  } catch (err) {
    problem((err as NodeJS.ErrnoException).code === 'ENOENT' ? `a path in an existing directory (${dir} does not exist; Lacquer does not create directories)` : `a path in a directory this user may write to (${dir})`);
  }
}

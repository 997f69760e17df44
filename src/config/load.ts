// File + environment → validated, frozen Config. Every problem is reported as
// `path: received value — what is valid`, all at once, so an operator fixes a config in one pass.
import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { ConfigSchema, TIMEOUT_DEFAULTS, type BackendConfig, type Config, type TimeoutConfig } from './schema.ts';
import { maskSecrets, maskValue } from './secrets.ts';
import { semanticProblems } from './semantics.ts';

export type ConfigProblem = { path: string; received: string; valid: string };

export class ConfigError extends Error {
  readonly problems: ConfigProblem[];
  constructor(source: string, problems: ConfigProblem[]) {
    super(`${source}: invalid configuration\n${problems.map(formatProblem).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

export function formatProblem(p: ConfigProblem): string {
  return `${p.path || '(top level)'}: ${p.received} — ${p.valid}`;
}

/** Reads and validates a YAML config file. Throws ConfigError listing every problem. */
export function loadConfigFile(file: string, env: NodeJS.ProcessEnv = process.env): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new ConfigError(file, [{ path: '(file)', received: `${file} (${code})`, valid: 'a readable YAML file' }]);
  }
  return parseConfigText(text, file, env);
}

export function parseConfigText(text: string, source = '(config)', env: NodeJS.ProcessEnv = process.env): Config {
  const doc = parseDocument(text, { prettyErrors: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      source,
      doc.errors.map((e) => ({
        path: `(yaml line ${e.linePos?.[0]?.line ?? '?'})`,
        received: JSON.stringify(e.message.split('\n')[0]),
        valid: 'well-formed YAML',
      })),
    );
  }
  const raw: unknown = doc.toJS() ?? {};
  const problems: ConfigProblem[] = [];
  const substituted = substituteEnv(raw, [], env, problems);
  if (problems.length) {
    // Report the schema's problems too (every problem in one pass), except where an unset variable already explains it.
    const unsetAt = new Set(problems.map((p) => p.path));
    problems.push(...allProblems(ConfigSchema.safeParse(substituted), substituted).filter((p) => !unsetAt.has(p.path)));
    throw new ConfigError(source, problems);
  }
  return validateConfig(substituted, source);
}

export function validateConfig(raw: unknown, source = '(config)'): Config {
  const result = ConfigSchema.safeParse(raw);
  const problems = allProblems(result, raw);
  if (problems.length || !result.success) throw new ConfigError(source, problems);
  return deepFreeze(result.data) as Config;
}

/** The schema's problems and the semantic ones, each path once (the schema's message wins). */
function allProblems(result: ReturnType<typeof ConfigSchema.safeParse>, raw: unknown): ConfigProblem[] {
  const problems = result.success ? [] : result.error.issues.flatMap((i) => describeIssue(i, raw));
  const at = new Set(problems.map((p) => p.path));
  for (const p of semanticProblems(raw)) {
    const path = p.path.map(String).join('.');
    if (at.has(path)) continue;
    at.add(path);
    problems.push({ path, received: show(p.value, p.path), valid: p.valid });
  }
  return problems;
}

/** Effective timeouts for a backend: built-in defaults < top-level `timeouts` < the backend's own. */
export function resolveTimeouts(cfg: Config, backend: BackendConfig): TimeoutConfig {
  const out: TimeoutConfig = { ...TIMEOUT_DEFAULTS };
  for (const layer of [cfg.timeouts, backend.timeouts ?? {}]) {
    for (const [k, v] of Object.entries(layer)) if (v !== undefined) out[k as keyof TimeoutConfig] = v;
  }
  return out;
}

const ENV_REF = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

/** `${VAR}` and `${VAR:-default}` in string values; an unset variable without default is a problem. */
function substituteEnv(node: unknown, path: (string | number)[], env: NodeJS.ProcessEnv, problems: ConfigProblem[]): unknown {
  if (typeof node === 'string') {
    return node.replace(ENV_REF, (whole, name: string, fallback: string | undefined) => {
      const v = env[name];
      if (v !== undefined) return v;
      if (fallback !== undefined) return fallback;
      problems.push({ path: path.join('.'), received: JSON.stringify(node), valid: `environment variable ${name} set (or \${${name}:-default})` });
      return whole;
    });
  }
  if (Array.isArray(node)) return node.map((v, i) => substituteEnv(v, [...path, i], env, problems));
  if (node && typeof node === 'object') {
    return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, substituteEnv(v, [...path, k], env, problems)]));
  }
  return node;
}

function valueAt(raw: unknown, path: PropertyKey[]): unknown {
  let cur: unknown = raw;
  for (const k of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[k];
  }
  return cur;
}

/** A received value as `check` prints it: JSON, secrets masked (issue 11 item 9), long values cut. */
function show(v: unknown, path: readonly PropertyKey[] = []): string {
  if (v === undefined) return '(missing)';
  const keys = path.map((k) => (typeof k === 'number' ? k : String(k)));
  const s = JSON.stringify(typeof v === 'string' ? maskValue(keys, v) : v && typeof v === 'object' ? maskSecrets(v, keys) : v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

function describeIssue(issue: z.core.$ZodIssue, raw: unknown): ConfigProblem[] {
  const path = issue.path;
  const dotted = path.map(String).join('.');
  if (issue.code === 'unrecognized_keys') {
    const allowed = allowedKeys(path);
    return issue.keys.map((k) => ({
      path: dotted ? `${dotted}.${k}` : k,
      received: show(valueAt(raw, [...path, k]), [...path, k]),
      valid: `not a setting here${allowed.length ? `; valid keys: ${allowed.join(', ')}` : ''}`,
    }));
  }
  let valid = issue.message;
  if (issue.code === 'invalid_type') valid = `expected ${issue.expected}`;
  else if (issue.code === 'invalid_value') valid = `one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
  else if (issue.code === 'too_small' || issue.code === 'too_big') valid = issue.message.replace(/^Too (small|big): expected /, 'expected ');
  return [{ path: dotted, received: show(valueAt(raw, path), path), valid }];
}

/** Keys a strict object at `path` accepts, read from the schema itself so the list never drifts. */
function allowedKeys(path: PropertyKey[]): string[] {
  let node: unknown = ConfigSchema;
  const unwrap = (n: unknown): unknown => {
    let cur = n as { _zod?: { def: Record<string, unknown> } };
    for (let i = 0; i < 10 && cur?._zod; i++) {
      const def = cur._zod.def;
      if (def.shape) return cur;
      const next = def.innerType ?? def.in ?? def.schema;
      if (!next) return cur;
      cur = next as typeof cur;
    }
    return cur;
  };
  for (const k of path) {
    const n = unwrap(node) as { _zod: { def: Record<string, unknown> } };
    const def = n?._zod?.def;
    if (!def) return [];
    if (typeof k === 'number') node = def.element;
    else node = (def.shape as Record<string, unknown> | undefined)?.[String(k)];
  }
  const def = (unwrap(node) as { _zod?: { def: Record<string, unknown> } })?._zod?.def;
  return def?.shape ? Object.keys(def.shape as object) : [];
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

// PUT /api/backends/{pool}/{backend}/health: the operator's override, set through the pool that owns the
// backend (BackendPool.setOverride). Parsing is lenient about the body's shape
// (`drain`, `"drain"`, `{"health":"drain"}`) and strict about the value.
import type { ProxyContext } from '../pipeline/context.ts';
import type { BackendSnapshot, HealthOverride } from '../upstream/state.ts';

export const OVERRIDES: readonly HealthOverride[] = ['auto', 'healthy', 'sick', 'drain'];

export type OverrideResult =
  | { ok: true; backend: BackendSnapshot }
  | { ok: false; status: 400 | 404; message: string };

export function parseOverride(body: string): HealthOverride | undefined {
  let v: unknown = body.trim();
  if (typeof v === 'string' && (v.startsWith('{') || v.startsWith('"'))) {
    try {
      v = JSON.parse(v);
    } catch {
      return undefined;
    }
  }
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    v = o.health ?? o.override ?? o.value;
  }
  return typeof v === 'string' && (OVERRIDES as readonly string[]).includes(v) ? (v as HealthOverride) : undefined;
}

export function setOverride(ctx: ProxyContext, poolName: string, backend: string, value: HealthOverride): OverrideResult {
  const pool = ctx.pools.get(poolName);
  if (!pool) return { ok: false, status: 404, message: `no pool named ${JSON.stringify(poolName)}; pools: ${[...ctx.pools.keys()].join(', ')}` };
  const snap = pool.setOverride(backend, value);
  if (!snap) return { ok: false, status: 404, message: `no backend named ${JSON.stringify(backend)} in pool ${poolName}; backends: ${pool.backends.map((b) => b.name).join(', ')}` };
  return { ok: true, backend: snap };
}

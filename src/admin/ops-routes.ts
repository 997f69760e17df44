// Admin endpoints for operating without downtime (issue 5): purge and ban, reload and rollback, the
// active configuration (secrets masked), maintenance mode. All of them change state: token rules apply.
import type { IncomingMessage } from 'node:http';
import { z } from 'zod';
import { primaryKey } from '../cache/key.ts';
import type { PurgeMode } from '../cache/invalidate.ts';
import { maskSecrets } from '../config/secrets.ts';
import { logReload } from '../ops/reload.ts';
import type { AdminDeps } from './views.ts';
import { readBody, type Reply, type Route } from './routes.ts';

/** Largest JSON body read by these endpoints. */
const MAX_BODY = 64 * 1024;

async function readJson(req: IncomingMessage): Promise<{ ok: true; value: unknown } | { ok: false; message: string }> {
  const text = await readBody(req, MAX_BODY);
  if (text === undefined) return { ok: false, message: `body over ${MAX_BODY} bytes, or unreadable` };
  if (!text.trim()) return { ok: true, value: {} };
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return { ok: false, message: 'body is not valid JSON' };
  }
}

const problem = (status: number, error: string, message: string): Reply => ({ status, body: { error, message } });

const PurgeBody = z
  .strictObject({
    url: z.string().optional(),
    prefix: z.string().optional(),
    regex: z.string().optional(),
    tags: z.array(z.string().min(1)).min(1).optional(),
    all: z.literal(true).optional(),
    soft: z.boolean().default(false),
  })
  .refine((b) => [b.url, b.prefix, b.regex, b.tags, b.all].filter((x) => x !== undefined).length === 1, {
    message: 'exactly one of url, prefix, regex, tags, all',
  });

/** `http://host/path?q` or `host/path` → the cache's primary key (host + path + query). */
function keyOf(target: string): string | undefined {
  if (/^https?:\/\//i.test(target)) {
    try {
      const u = new URL(target);
      return primaryKey(u.host, u.pathname + u.search);
    } catch {
      return undefined;
    }
  }
  const slash = target.indexOf('/');
  try {
    return slash > 0 ? primaryKey(target.slice(0, slash), target.slice(slash)) : undefined;
  } catch {
    return undefined; // not a valid host: no request could have been stored under it
  }
}

const MaintenanceBody = z.strictObject({
  mode: z.enum(['off', 'stale-only', 'page', 'auto']),
  pool: z.string().optional(),
  until: z.string().refine((s) => !Number.isNaN(Date.parse(s)), 'an ISO 8601 date').optional(),
});

function needOps(d: AdminDeps): NonNullable<AdminDeps['ops']> | undefined {
  return d.ops;
}

export const OPS_ROUTES: Route[] = [
  {
    method: 'POST',
    pattern: /^\/api\/purge$/,
    write: true,
    async handle(d, _m, _url, req) {
      const body = await readJson(req);
      if (!body.ok) return problem(400, 'invalid_body', body.message);
      const p = PurgeBody.safeParse(body.value);
      if (!p.success) return problem(400, 'invalid_purge', p.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; '));
      const b = p.data;
      const inv = d.ctx().invalidator;
      const mode: PurgeMode = b.soft ? 'soft' : 'hard';
      let kind: string;
      let hit: number;
      try {
        if (b.url !== undefined) {
          const key = keyOf(b.url);
          if (!key) return problem(400, 'invalid_url', `url must be http://host/path or host/path; got ${JSON.stringify(b.url)}`);
          kind = 'url';
          hit = inv.purgeUrl(key, mode);
        } else if (b.prefix !== undefined) {
          kind = 'prefix';
          const key = b.prefix.startsWith('/') ? undefined : keyOf(b.prefix);
          hit = key ? inv.ban({ kind: 'prefix', value: key }, mode) : inv.ban({ kind: 'path-prefix', value: b.prefix }, mode);
        } else if (b.regex !== undefined) {
          kind = 'regex';
          hit = inv.ban({ kind: 'regex', value: b.regex }, mode);
        } else if (b.tags !== undefined) {
          kind = 'tags';
          hit = inv.purgeTags(b.tags, mode);
        } else {
          kind = 'all';
          hit = inv.purgeAll(mode);
        }
      } catch (err) {
        return problem(400, 'invalid_regex', (err as Error).message);
      }
      d.ctx().log.logger.warn({ type: 'admin', purge: kind, mode, target: b.url ?? b.prefix ?? b.regex ?? b.tags, objects: hit }, `purge (${kind}, ${mode}): ${hit} objects`);
      // Fleet / workers (coord/): answer once the purge has been handed to the other processes.
      await inv.broadcastDone();
      return { status: 200, body: { purged: hit, kind, mode } };
    },
  },
  {
    method: 'POST',
    pattern: /^\/api\/reload$/,
    write: true,
    async handle(d) {
      const ops = needOps(d);
      if (!ops) return problem(501, 'not_available', 'reload is not available in this process');
      const r = await ops.config.reload();
      logReload(d.ctx().log.logger, r);
      return { status: r.ok ? 200 : 422, body: r };
    },
  },
  {
    method: 'POST',
    pattern: /^\/api\/rollback$/,
    write: true,
    async handle(d) {
      const ops = needOps(d);
      if (!ops) return problem(501, 'not_available', 'rollback is not available in this process');
      const r = await ops.config.rollback();
      d.ctx().log.logger[r.ok ? 'info' : 'error']({ type: 'rollback', ...r }, r.ok ? `rolled back (version ${r.version})` : `rollback refused: ${r.reason}`);
      return { status: r.ok ? 200 : 409, body: r };
    },
  },
  {
    method: 'GET',
    pattern: /^\/api\/config$/,
    write: false,
    handle(d) {
      const ops = needOps(d);
      return { status: 200, body: { active: maskSecrets(d.ctx().config), history: ops?.config.history() ?? [] } };
    },
  },
  {
    method: 'GET',
    pattern: /^\/api\/maintenance$/,
    write: false,
    handle(d) {
      const ctx = d.ctx();
      const now = Date.now();
      const pools = Object.fromEntries([...ctx.pools.keys()].map((p) => [p, ctx.maintenance.modeFor(p, now)]));
      return { status: 200, body: { pools, overrides: ctx.maintenance.overrides(), windows: ctx.maintenance.config.windows.map((w) => ({ ...w, from: new Date(w.from).toISOString(), until: new Date(w.until).toISOString() })) } };
    },
  },
  {
    method: 'PUT',
    pattern: /^\/api\/maintenance$/,
    write: true,
    async handle(d, _m, _url, req) {
      const body = await readJson(req);
      if (!body.ok) return problem(400, 'invalid_body', body.message);
      const p = MaintenanceBody.safeParse(body.value);
      if (!p.success) return problem(400, 'invalid_maintenance', p.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; '));
      const ctx = d.ctx();
      const target = p.data.pool ?? '*';
      if (p.data.pool !== undefined && !ctx.pools.has(p.data.pool)) return problem(404, 'not_found', `no pool ${JSON.stringify(p.data.pool)}; pools: ${[...ctx.pools.keys()].join(', ')}`);
      // `auto` removes the override (config and schedule apply again); `off` forces normal service.
      ctx.maintenance.set(target, p.data.mode === 'auto' ? undefined : { mode: p.data.mode, until: p.data.until ? Date.parse(p.data.until) : undefined });
      ctx.log.logger.warn({ type: 'admin', maintenance: p.data }, `maintenance ${target === '*' ? 'global' : `pool ${target}`}: ${p.data.mode}`);
      return { status: 200, body: { target, mode: p.data.mode, until: p.data.until } };
    },
  },
];

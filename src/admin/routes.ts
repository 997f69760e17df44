// The admin endpoints: a table of method + path pattern → handler, each answering JSON (or Prometheus text).
// Every handler is read-only except the health override, which is marked `write` for the auth check.
import type { IncomingMessage } from 'node:http';
import { ERROR_TYPES } from '../errors.ts';
import { OVERRIDES, parseOverride, setOverride } from './override.ts';
import { alertsView, backendsView, dashboardSnapshot, failuresView, readiness, statsView, type AdminDeps } from './views.ts';

export type Reply = { status: number; body: unknown } | { status: number; text: string; type: string };

export type Route = {
  method: 'GET' | 'PUT' | 'POST' | 'DELETE';
  pattern: RegExp;
  write: boolean;
  /**
   * Answers without the token: Kubernetes probes and load balancers cannot send one (issue 11 item 14).
   * `authorized` says whether the caller passed the token rules; without it the answer carries only the verdict.
   */
  open?: true;
  handle(d: AdminDeps, m: RegExpExecArray, url: URL, req: IncomingMessage, authorized: boolean): Reply | Promise<Reply>;
};

/** Largest PUT body read (an override is one word). */
const MAX_BODY = 1024;

/** Reads a small request body; undefined when it is over `max` bytes or cannot be read. */
export function readBody(req: IncomingMessage, max = MAX_BODY): Promise<string | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let n = 0;
    req.on('data', (c: Buffer) => {
      n += c.length;
      if (n > max) {
        resolve(undefined);
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', () => resolve(undefined));
  });
}

const problem = (status: number, error: string, message: string): Reply => ({ status, body: { error, message } });

export const ROUTES: Route[] = [
  {
    method: 'GET',
    pattern: /^\/healthz$/,
    write: false,
    open: true,
    handle: (d) => ({ status: 200, body: { status: 'ok', name: d.ctx().name, uptime_s: Math.round((Date.now() - d.observer.startedAt) / 1000) } }),
  },
  {
    method: 'GET',
    pattern: /^\/readyz$/,
    write: false,
    open: true,
    handle: (d, _m, _url, _req, authorized) => {
      const r = readiness(d);
      // Pool and backend names and states are for operators: an anonymous probe gets the verdict only.
      return { status: r.ready ? 200 : 503, body: authorized ? r : { ready: r.ready } };
    },
  },
  { method: 'GET', pattern: /^\/api\/backends$/, write: false, handle: (d) => ({ status: 200, body: { pools: backendsView(d) } }) },
  {
    method: 'PUT',
    pattern: /^\/api\/backends\/([^/]+)\/([^/]+)\/health$/,
    write: true,
    async handle(d, m, _url, req) {
      const body = await readBody(req);
      if (body === undefined) return problem(413, 'body_too_large', `send one of ${OVERRIDES.join(', ')}`);
      const value = parseOverride(body);
      if (!value) return problem(400, 'invalid_override', `body must be one of ${OVERRIDES.join(', ')} (plain, JSON string or {"health": ...}); got ${JSON.stringify(body.slice(0, 40))}`);
      const r = setOverride(d.ctx(), decodeURIComponent(m[1]!), decodeURIComponent(m[2]!), value);
      if (!r.ok) return problem(r.status, 'not_found', r.message);
      d.ctx().log.logger.warn({ type: 'admin', pool: m[1], backend: m[2], override: value }, `operator override: ${m[1]}/${m[2]} → ${value}`);
      const view = backendsView(d).find((p) => p.name === r.backend.pool)?.backends.find((b) => b.name === r.backend.name);
      return { status: 200, body: view ?? r.backend };
    },
  },
  {
    method: 'GET',
    pattern: /^\/api\/failures$/,
    write: false,
    handle(d, _m, url) {
      const limitRaw = url.searchParams.get('limit');
      const limit = limitRaw === null ? 50 : Number(limitRaw);
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000) return problem(400, 'invalid_limit', `limit must be an integer 1..1000; got ${JSON.stringify(limitRaw)}`);
      const cls = url.searchParams.get('class') ?? undefined;
      if (cls && cls !== 'origin_5xx' && !(ERROR_TYPES as readonly string[]).includes(cls)) {
        return problem(400, 'invalid_class', `class must be an RFC 9209 error type: ${ERROR_TYPES.join(', ')}`);
      }
      const failures = failuresView(d, { limit, class: cls, backend: url.searchParams.get('backend') ?? undefined });
      return { status: 200, body: { count: failures.length, failures } };
    },
  },
  {
    method: 'GET',
    pattern: /^\/api\/failures\/([^/]+)$/,
    write: false,
    handle(d, m) {
      const id = decodeURIComponent(m[1]!);
      const f = d.ctx().log.recentFailures().find((x) => x.id === id);
      return f ? { status: 200, body: f } : problem(404, 'not_found', `no recent failure report with request id ${JSON.stringify(id)} (the newest are kept)`);
    },
  },
  { method: 'GET', pattern: /^\/api\/stats$/, write: false, handle: (d) => ({ status: 200, body: statsView(d) }) },
  { method: 'GET', pattern: /^\/api\/alerts$/, write: false, handle: (d) => ({ status: 200, body: alertsView(d) }) },
  { method: 'GET', pattern: /^\/api\/dashboard$/, write: false, handle: (d) => ({ status: 200, body: dashboardSnapshot(d) }) },
  {
    method: 'GET',
    pattern: /^\/metrics$/,
    write: false,
    handle: async (d) => ({ status: 200, text: await d.observer.metrics.scrape(), type: d.observer.metrics.contentType }),
  },
];

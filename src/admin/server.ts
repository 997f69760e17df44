// The admin listener: a second HTTP server, never on the public port, serving the health endpoints, the
// JSON API, Prometheus /metrics, the dashboard's static assets and its event stream.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { splitHostPort } from '../server/listener.ts';
import { isLoopbackHost } from '../config/schema.ts';
import { adminAuth } from './auth.ts';
import { ROUTES, type Reply } from './routes.ts';
import { OPS_ROUTES } from './ops-routes.ts';

const ALL_ROUTES = [...ROUTES, ...OPS_ROUTES];
import { EventStreams, MAX_STREAMS } from './sse.ts';
import { loadAssets, MISSING_DASHBOARD } from './static.ts';
import { dashboardSnapshot, failuresView, liveView, type AdminDeps } from './views.ts';

export type AdminServer = { server: Server; address: string; port: number; url: string; close(): Promise<void> };

const SECURITY_HEADERS = {
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
};

/** The page loads only its own bundle and talks only to this listener: no external network. */
const CSP = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'";

function send(res: ServerResponse, r: Reply, head = false): void {
  const isText = 'text' in r;
  const body = isText ? r.text : `${JSON.stringify(r.body, null, 2)}\n`;
  res.writeHead(r.status, {
    ...SECURITY_HEADERS,
    'content-type': isText ? r.type : 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    ...(r.status === 401 ? { 'www-authenticate': 'Bearer realm="lacquer-admin"' } : {}),
  });
  res.end(head ? undefined : body);
}

export async function startAdmin(d: Omit<AdminDeps, 'tokenRequired'>, listen: string, token: () => string | undefined): Promise<AdminServer> {
  const { host, port } = splitHostPort(listen);
  if (!token() && !isLoopbackHost(host)) throw new Error(`admin.listen ${listen} is not a loopback address: set admin.token (refusing to expose the admin plane without one)`);
  const auth = adminAuth(host, token);
  const deps: AdminDeps = { ...d, tokenRequired: () => auth.tokenRequired };
  const assets = loadAssets();
  const streams = new EventStreams();
  /** Per stream: the newest failure id it has, so the list is resent only when it changed. */
  const sentFailure = new WeakMap<ServerResponse, string>();

  const unsubscribe = d.observer.onTick((point) => {
    if (streams.size === 0) return;
    const live = liveView(deps, false);
    const failures = failuresView(deps, { limit: 50 });
    const newest = failures[0]?.id ?? '';
    streams.each((res) => {
      const changed = sentFailure.get(res) !== newest;
      sentFailure.set(res, newest);
      streams.send(res, 'tick', { point, ...live, failures: changed ? failures : undefined });
    });
  });

  const server = createServer({ headersTimeout: 10_000, requestTimeout: 30_000 }, (req: IncomingMessage, res: ServerResponse) => {
    void handle(req, res).catch((err: unknown) => {
      d.ctx().log.logger.error({ err, url: req.url }, 'admin request failed');
      if (!res.headersSent) send(res, { status: 500, body: { error: 'internal', message: 'the admin handler failed; see the log' } });
      else res.destroy();
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // The target is a path (RFC 9112 §3.2.1 origin-form): read as a URL reference, `//` was an authority with
    // no host and new URL() threw (a 500 and an error line for a mistyped address); what does not parse is a 400.
    const target = req.url ?? '/';
    const url = URL.parse(target.startsWith('/') ? `http://admin${target}` : target, 'http://admin');
    if (!url) return send(res, { status: 400, body: { error: 'bad_request', message: `not a request target: ${JSON.stringify(target.slice(0, 200))}` } });
    const method = req.method === 'HEAD' ? 'GET' : (req.method ?? 'GET');
    const head = req.method === 'HEAD';
    // The dashboard shell and bundle carry no data (every figure comes from the API, with the token): served
    // without auth so a browser can load the page that then asks for the token.
    if (method === 'GET' && (url.pathname === '/' || url.pathname.startsWith('/static/'))) {
      const a = assets.get(url.pathname);
      if (!a) {
        if (url.pathname === '/') return send(res, { status: 503, text: MISSING_DASHBOARD, type: 'text/plain; charset=utf-8' }, head);
        return send(res, { status: 404, body: { error: 'not_found', message: `no asset ${url.pathname}` } }, head);
      }
      res.writeHead(200, {
        ...SECURITY_HEADERS,
        'content-type': a.type,
        'content-length': a.body.length,
        'cache-control': url.pathname === '/' ? 'no-cache' : 'public, max-age=300',
        'content-security-policy': CSP,
      });
      res.end(head ? undefined : a.body);
      return;
    }
    if (url.pathname === '/api/events') {
      if (method !== 'GET') return send(res, { status: 405, body: { error: 'method_not_allowed', message: 'GET only' } });
      const ok = auth.decide(req, false);
      if (!ok.ok) return send(res, { status: ok.status, body: { error: 'unauthorized', message: ok.message } });
      if (streams.size >= MAX_STREAMS) return send(res, { status: 503, body: { error: 'too_many_streams', message: `at most ${MAX_STREAMS} dashboards at once` } });
      streams.open(res);
      const snap = dashboardSnapshot(deps);
      sentFailure.set(res, snap.failures?.[0]?.id ?? '');
      streams.send(res, 'snapshot', snap);
      return;
    }
    const matching = ALL_ROUTES.filter((r) => r.pattern.test(url.pathname));
    if (matching.length === 0) return send(res, { status: 404, body: { error: 'not_found', message: `no admin endpoint ${url.pathname}` } }, head);
    const route = matching.find((r) => r.method === method);
    if (!route) {
      res.setHeader('allow', [...new Set(matching.map((r) => (r.method === 'GET' ? 'GET, HEAD' : r.method)))].join(', '));
      return send(res, { status: 405, body: { error: 'method_not_allowed', message: `${req.method} is not allowed on ${url.pathname}` } });
    }
    const ok = auth.decide(req, route.write);
    if (!ok.ok && !route.open) return send(res, { status: ok.status, body: { error: ok.status === 401 ? 'unauthorized' : 'forbidden', message: ok.message } }, head);
    const reply = await route.handle(deps, route.pattern.exec(url.pathname)!, url, req, ok.ok);
    // workers (issue 12): a change answers once every worker has applied it.
    if (route.write) await deps.ctx().coord.settled?.();
    send(res, reply, head);
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address();
  const boundPort = typeof addr === 'object' && addr ? addr.port : port;
  const address = `${host.includes(':') ? `[${host}]` : host}:${boundPort}`;
  return {
    server,
    address,
    port: boundPort,
    url: `http://${address}`,
    async close() {
      unsubscribe();
      streams.closeAll();
      const closed = new Promise<void>((r) => server.close(() => r()));
      server.closeAllConnections();
      await closed;
    },
  };
}

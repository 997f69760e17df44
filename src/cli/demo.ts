// `lacquer demo` (what `npm start` runs): the bundled demo origins on the example's backend ports, Lacquer
// in front of them, and a one-minute walkthrough: a miss, a hit, the origins going down, a stale serve,
// an explained 503, and recovery. The proxy keeps running afterwards for the reader to try.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { startOrigin, type Origin } from '../lab/origin.ts';
import { splitHostPort } from '../server/listener.ts';
import { formatProblem } from '../config/load.ts';
import { StartupError } from '../main.ts';
import { loadOrExit, startOrExit, startupProblem } from './serve.ts';

const TTL_SECONDS = 4;

async function show(base: string, path: string, label: string): Promise<string> {
  const res = await request(`${base}${path}`, { headers: { accept: 'text/html' } });
  const body = await res.body.text();
  const h = res.headers;
  const lines = [`\n▶ ${label}`, `  GET ${path} → ${res.statusCode}`, `  Cache-Status: ${h['cache-status']}`];
  if (h['age'] !== undefined) lines.push(`  Age: ${h['age']}`);
  if (h['proxy-status']) lines.push(`  Proxy-Status: ${h['proxy-status']}`);
  if (h['retry-after']) lines.push(`  Retry-After: ${h['retry-after']}`);
  lines.push(`  X-Request-Id: ${h['x-request-id']}`);
  if (res.statusCode >= 500) lines.push(`  body: ${body.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').trim().slice(0, 160)}`);
  process.stderr.write(`${lines.join('\n')}\n`);
  return String(h['x-request-id']);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function demoCommand(file: string, walkthrough: boolean): Promise<void> {
  const config = loadOrExit(file);
  const origins: Origin[] = [];
  const fail = async (err: unknown): Promise<never> => {
    await Promise.all(origins.map((o) => o.close()));
    process.stderr.write(`${file}: cannot start: ${formatProblem(startupProblem(err))}\n`);
    process.exit(1);
  };
  for (const [i, b] of config.backends.entries()) {
    const u = new URL(b.url);
    const { host, port } = splitHostPort(u.host.includes(':') ? u.host : `${u.hostname}:80`);
    // The demo origins listen on the backends' ports: a taken one is named by its setting, like the proxy's.
    const origin = await startOrigin({
      host: host || '127.0.0.1',
      port,
      behaviours: {
        '/': { kind: 'normal', cacheControl: `max-age=${TTL_SECONDS}`, headers: { 'content-type': 'text/html; charset=utf-8' }, body: `<h1>Hello from ${b.name}</h1>\n` },
        '/api/now': { kind: 'normal', cacheControl: 'no-store', headers: { 'content-type': 'application/json' }, body: '{"now":"dynamic"}\n' },
        '*': { kind: 'normal', cacheControl: `max-age=${TTL_SECONDS}` },
      },
    }).catch((err: unknown) => fail(new StartupError(`backends.${i}.url`, b.url, err)));
    origins.push(origin);
  }
  // During the walkthrough the access log goes to a file, so the narration stays readable; it is removed
  // when the demo stops (nothing left in /tmp).
  const logDir = walkthrough ? mkdtempSync(join(tmpdir(), 'lacquer-demo-')) : undefined;
  const logFile = logDir ? join(logDir, 'access.log') : undefined;
  const cleanup = () => logDir && rmSync(logDir, { recursive: true, force: true });
  process.once('exit', cleanup);
  const proxy = await startOrExit(config, file, { logDestination: logFile });
  const base = proxy.url;
  process.stderr.write(`Lacquer demo: proxy ${base} in front of ${config.backends.map((b) => `${b.name} ${b.url}`).join(', ')}\n`);
  if (proxy.plane.admin) process.stderr.write(`Dashboard: ${proxy.plane.admin.url}/ (Prometheus: ${proxy.plane.admin.url}/metrics)\n`);
  const stop = () => {
    void proxy.stop().then(() => Promise.all(origins.map((o) => o.close()))).then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  if (!walkthrough) return;

  await show(base, '/', 'First request: a miss, fetched from the origin and stored');
  await show(base, '/', 'Second request: a cache hit, the origin is not asked');
  process.stderr.write('\n▶ Stopping both origins (connections are now refused) and waiting for the object to expire...\n');
  await Promise.all(origins.map((o) => o.refuse()));
  await sleep(TTL_SECONDS * 1000 + 500);
  await show(base, '/', 'Expired object, origins down: served stale (negative ttl) instead of an error');
  const id = await show(base, '/api/now', 'Uncacheable page, origins down: an explained 503, never a bare one');
  const report = proxy.ctx.log.recentFailures().find((f) => f.id === id);
  if (report) {
    const { class: cls, phase, code, backend, address, attempts, hint } = report;
    process.stderr.write(`  the access log's report for ${id}:\n  ${JSON.stringify({ class: cls, phase, code, backend, address, attempts, hint })}\n`);
  }
  await Promise.all(origins.map((o) => o.resume()));
  await show(base, '/api/now', 'Origins back: the page works again');
  process.stderr.write(
    `\nThe access log (${logFile}) explains every failure: see README "Why did I get a 503?". Lacquer keeps running on ${base} (Ctrl-C stops it); try:\n  curl -i ${base}/\n`,
  );
}

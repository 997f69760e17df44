// The explained error response: the one function that turns a ProxyError into what the client sees.
// Never a bare 503: RFC 9209 Proxy-Status with the class and next hop, Retry-After, the request id,
// and a short page in plain words (details only when errors.expose_details is on; always in the log).
import { PLAIN, type ProxyError } from '../errors.ts';
import type { Exchange } from '../server/exchange.ts';
import type { ProxyContext } from './context.ts';
import { cacheStatusValue } from './deliver.ts';

/** RFC 9209 Proxy-Status member for a failure. */
export function proxyStatusForError(name: string, err: ProxyError): string {
  let s = `${name}; error=${err.type}`;
  if (err.backend) s += `; next-hop="${err.backend}"`;
  const details = err.details;
  if (details) s += `; details="${details.replace(/["\\]/g, '')}"`;
  return s;
}

/** RFC 9209 Proxy-Status member when the origin itself answered with an error status. */
export function proxyStatusForReceived(name: string, status: number, backend: string | undefined): string {
  return `${name}; received-status=${status}${backend ? `; next-hop="${backend}"` : ''}`;
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function wantsJson(accept: string | undefined): boolean {
  if (!accept) return false;
  return /application\/(?:[\w.+-]+\+)?json/.test(accept) && !/text\/html|\*\/\*/.test(accept);
}

export function synthError(ctx: ProxyContext, ex: Exchange, err: ProxyError): void {
  ex.error = err;
  ex.served = 'synth';
  ex.backend ??= err.backend;
  const { res } = ex;
  if (ex.clientGone || res.headersSent) return;
  const status = 503;
  const retryAfter = Math.max(1, Math.ceil(ctx.config.errors.retry_after / 1000));
  ex.proxyStatus = proxyStatusForError(ctx.name, err);
  const expose = ctx.config.errors.expose_details;
  const facts = {
    status,
    error: err.type,
    message: PLAIN[err.type],
    request_id: ex.id,
    retry_after: retryAfter,
    ...(expose
      ? { backend: err.backend, address: err.address, phase: err.phase, code: err.code, details: err.details, hint: err.hint }
      : {}),
  };
  let body: string;
  let type: string;
  if (wantsJson(ex.req.headers.accept)) {
    body = `${JSON.stringify(facts)}\n`;
    type = 'application/json';
  } else {
    const rows = expose
      ? `<dl><dt>backend</dt><dd>${escapeHtml(`${err.backend ?? '-'} ${err.address ?? ''}`)}</dd><dt>phase</dt><dd>${err.phase}</dd><dt>code</dt><dd>${escapeHtml(err.code)}</dd><dt>details</dt><dd>${escapeHtml(err.details || '-')}</dd><dt>hint</dt><dd>${escapeHtml(err.hint)}</dd></dl>`
      : '';
    body = `<!doctype html><html><head><meta charset="utf-8"><title>503 Service Unavailable</title></head><body>
<h1>Service temporarily unavailable</h1>
<p>${escapeHtml(PLAIN[err.type])} (<code>${err.type}</code>)</p>
<p>Please try again in ${retryAfter} seconds. Request id: <code>${escapeHtml(ex.id)}</code></p>
${rows}</body></html>
`;
    type = 'text/html; charset=utf-8';
  }
  res.writeHead(status, [
    'content-type', type,
    'content-length', String(Buffer.byteLength(body)),
    'cache-control', 'no-store',
    'retry-after', String(retryAfter),
    'proxy-status', ex.proxyStatus,
    'cache-status', cacheStatusValue(ctx.name, ex.cache),
    'x-request-id', ex.id,
  ]);
  ex.bytesOut = ex.method === 'HEAD' ? 0 : Buffer.byteLength(body);
  res.end(ex.method === 'HEAD' ? undefined : body);
}

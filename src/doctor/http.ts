// Doctor, step 4: GET the probe path on a fresh connection, a few times, and time it the way Lacquer's
// timeouts see it: first byte = request sent → complete response head (`timeouts.first_byte`), then the
// body with `timeouts.between_bytes` between chunks. Also the response head size (against
// `limits.response_header_size`) and the `Keep-Alive: timeout=N` the origin advertises (the keep-alive race).
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import { performance } from 'node:perf_hooks';
import tls from 'node:tls';

export type HttpSample = {
  status?: number;
  /** Request fully sent → response head parsed. */
  ttfbMs?: number;
  totalMs: number;
  connectMs?: number;
  headerBytes?: number;
  bodyBytes: number;
  /** Seconds, from `Keep-Alive: timeout=N`; undefined when not advertised. */
  keepAliveS?: number;
  connection?: string;
  /** Raw code of the failure, as classifyFetchError reads it. */
  error?: string;
  headersReceived: boolean;
  requestSent: boolean;
};

export type HttpProbeOptions = {
  scheme: 'http' | 'https';
  address: string;
  port: number;
  /** Name for the Host header and SNI. */
  host: string;
  hostHeader?: string;
  path: string;
  timeouts: { connect: number; first_byte: number; between_bytes: number };
  /** The configured response head limit; the probe itself accepts larger heads so it can measure them. */
  headerLimit: number;
  ca?: string | Buffer | (string | Buffer)[];
};

/** Bodies are drained and counted, never kept; past this many bytes the probe stops reading. */
const MAX_BODY_BYTES = 8 * 1024 * 1024;

export function headSize(res: IncomingMessage): number {
  let n = `HTTP/${res.httpVersion} ${res.statusCode} ${res.statusMessage ?? ''}\r\n`.length + 2;
  for (let i = 0; i < res.rawHeaders.length; i += 2) n += Buffer.byteLength(`${res.rawHeaders[i]}: ${res.rawHeaders[i + 1]}\r\n`, 'latin1');
  return n;
}

function keepAliveSeconds(v: string | undefined): number | undefined {
  const m = v ? /(?:^|[,\s])timeout\s*=\s*(\d+)/i.exec(v) : null;
  return m ? Number(m[1]) : undefined;
}

export function probeOnce(o: HttpProbeOptions): Promise<HttpSample> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    let connectedAt: number | undefined;
    let sentAt: number | undefined;
    let headersAt: number | undefined;
    let bodyBytes = 0;
    let head: Pick<HttpSample, 'status' | 'headerBytes' | 'keepAliveS' | 'connection'> = {};
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const arm = (ms: number, code: string): void => {
      clearTimeout(timer);
      timer = setTimeout(() => fail(code), ms);
    };
    const hostHeader = o.hostHeader ?? (o.port === (o.scheme === 'https' ? 443 : 80) ? o.host : `${o.host.includes(':') ? `[${o.host}]` : o.host}:${o.port}`);
    const common = {
      host: o.address,
      port: o.port,
      path: o.path,
      method: 'GET',
      agent: false as const,
      // keep-alive, as Lacquer's pool asks: an origin advertises its `Keep-Alive: timeout=` only then.
      headers: { host: hostHeader, 'user-agent': 'lacquer-doctor', accept: '*/*', connection: 'keep-alive' },
      maxHeaderSize: Math.max(4 * o.headerLimit, 256 * 1024),
    };
    const ca = o.ca === undefined ? undefined : [...tls.rootCertificates, ...(Array.isArray(o.ca) ? o.ca : [o.ca])];
    // Certificate problems are the TLS step's finding; here the request goes on so HTTP facts are still measured.
    const req =
      o.scheme === 'https'
        ? https.request({ ...common, servername: isIP(o.host) ? undefined : o.host, rejectUnauthorized: false, ca })
        : http.request(common);
    const finish = (extra: Partial<HttpSample>): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      const now = performance.now();
      const start = Math.max(sentAt ?? now, connectedAt ?? 0);
      resolve({
        ...head,
        ttfbMs: headersAt !== undefined ? headersAt - start : undefined,
        totalMs: now - t0,
        connectMs: connectedAt !== undefined ? connectedAt - t0 : undefined,
        bodyBytes,
        headersReceived: headersAt !== undefined,
        requestSent: sentAt !== undefined && connectedAt !== undefined,
        ...extra,
      });
      req.destroy();
    };
    // Codes chosen so classifyFetchError gives the class Lacquer would report for the same event.
    const fail = (code: string): void => finish({ error: code });
    arm(o.timeouts.connect, 'ETIMEDOUT');
    req.once('socket', (s) => {
      s.once(o.scheme === 'https' ? 'secureConnect' : 'connect', () => {
        connectedAt = performance.now();
        arm(o.timeouts.first_byte, 'UND_ERR_HEADERS_TIMEOUT');
      });
    });
    req.once('finish', () => (sentAt = performance.now()));
    req.once('error', (e: NodeJS.ErrnoException) => fail(e.code ?? 'UNKNOWN'));
    req.once('response', (res) => {
      headersAt = performance.now();
      const ka = res.headers['keep-alive'];
      head = {
        status: res.statusCode,
        headerBytes: headSize(res),
        keepAliveS: keepAliveSeconds(Array.isArray(ka) ? ka[0] : ka),
        connection: res.headers.connection,
      };
      arm(o.timeouts.between_bytes, 'UND_ERR_BODY_TIMEOUT');
      res.on('data', (c: Buffer) => {
        bodyBytes += c.length;
        arm(o.timeouts.between_bytes, 'UND_ERR_BODY_TIMEOUT');
        if (bodyBytes > MAX_BODY_BYTES) finish({});
      });
      res.once('end', () => finish({}));
      res.once('error', (e: NodeJS.ErrnoException) => fail(e.code ?? 'UNKNOWN'));
      // Closed before the body was complete: the origin died mid-body (http_response_incomplete).
      res.once('close', () => { if (!res.complete) fail('UND_ERR_RES_CONTENT_LENGTH_MISMATCH'); });
    });
    req.end();
  });
}

/** `repeat` sequential probes; stops early after a timeout so one slow origin cannot stall the doctor for minutes. */
export async function probeHttp(o: HttpProbeOptions, repeat: number): Promise<HttpSample[]> {
  const out: HttpSample[] = [];
  for (let i = 0; i < repeat; i++) {
    const s = await probeOnce(o);
    out.push(s);
    if (s.error === 'UND_ERR_HEADERS_TIMEOUT' || s.error === 'ETIMEDOUT' || s.error === 'ECONNREFUSED') break;
  }
  return out;
}

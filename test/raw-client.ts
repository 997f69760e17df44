// A node:http client that records how a response ended (complete, aborted, error), which undici's
// request() hides behind a thrown error. Used to prove a mid-body failure aborts the client connection.
import http from 'node:http';
import net from 'node:net';

export type RawReply = {
  status: number | undefined;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** The whole message arrived (Content-Length or chunked terminator seen). */
  complete: boolean;
  /** The request or the response errored (connection reset / aborted mid-body). */
  error: NodeJS.ErrnoException | undefined;
  ms: number;
};

export type RawOptions = { method?: string; headers?: Record<string, string>; body?: Buffer | string; timeoutMs?: number };

export function rawRequest(url: string, o: RawOptions = {}): Promise<RawReply> {
  const started = performance.now();
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const out: RawReply = { status: undefined, headers: {}, body: Buffer.alloc(0), complete: false, error: undefined, ms: 0 };
    let settled = false;
    const done = () => {
      if (settled) return;
      settled = true;
      clearTimeout(guard);
      out.body = Buffer.concat(chunks);
      out.ms = performance.now() - started;
      resolve(out);
    };
    const req = http.request(url, { method: o.method ?? 'GET', headers: o.headers, agent: false }, (res) => {
      out.status = res.statusCode;
      out.headers = res.headers;
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', (e: NodeJS.ErrnoException) => (out.error ??= e));
      res.on('close', () => {
        out.complete = res.complete;
        done();
      });
    });
    req.on('error', (e: NodeJS.ErrnoException) => {
      out.error ??= e;
      done();
    });
    const guard = setTimeout(() => {
      out.error ??= Object.assign(new Error('test client timeout'), { code: 'TEST_TIMEOUT' });
      req.destroy();
      done();
    }, o.timeoutMs ?? 10_000);
    req.end(o.body);
  });
}

/** Writes `text` on a fresh TCP connection and returns everything read until the server closes it (or `ms`). */
export function rawExchange(port: number, text: string | Buffer, ms = 2000): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const sock = net.connect(port, '127.0.0.1', () => sock.write(text));
    const done = () => {
      clearTimeout(t);
      resolve(Buffer.concat(chunks).toString('latin1'));
    };
    const t = setTimeout(() => sock.destroy(), ms);
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('error', () => undefined);
    sock.on('close', done);
  });
}

/** Status code and lowercased header map of a raw HTTP/1.1 response head. */
export function parseHead(raw: string): { status: number; headers: Record<string, string> } {
  const [head = ''] = raw.split('\r\n\r\n');
  const [statusLine = '', ...lines] = head.split('\r\n');
  const headers: Record<string, string> = {};
  for (const l of lines) {
    const i = l.indexOf(':');
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  return { status: Number(statusLine.split(' ')[1]), headers };
}

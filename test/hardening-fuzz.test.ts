// Issue 11, item 21 (the fuzz half): random and mutated request heads against a live listener. Whatever
// arrives, Lacquer must not crash, must answer with a 4xx or a valid response (never garbage, never a 5xx
// of its own: the origin here is healthy), must never send two origin requests for one client request, and
// must never pass on something the origin cannot parse (the seed of request smuggling).
//
// Deterministic by default; LACQUER_FUZZ_SEED and LACQUER_FUZZ_CASES explore further (the failure message
// names the seed and the case, so it can be replayed).
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seededRandom } from '../src/lab/origin-behaviours.ts';
import { startHarness, type Harness } from './helpers.ts';

const SEED = Number(process.env.LACQUER_FUZZ_SEED ?? 0x1ac9e4);
const CASES = Number(process.env.LACQUER_FUZZ_CASES ?? 2000);
const CONCURRENCY = 64;
/** How long a case waits for a first byte before it half-closes (the head may be incomplete). */
const NO_ANSWER_MS = Number(process.env.LACQUER_FUZZ_NO_ANSWER_MS ?? 500);
/** How long the answers must be quiet before the case half-closes. */
const QUIET_MS = 40;
/** A request id Lacquer made (a random UUID), as opposed to one a client sent and another case may repeat. */
const LACQUER_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
/** A case that gets no close from the proxy in this long is a failure (a hang), not a slow machine. */
const CASE_GUARD_MS = 10_000;

/** Valid requests the mutations start from: every framing, target form and field Lacquer looks at. */
const TEMPLATES = [
  'GET / HTTP/1.1\r\nHost: site.example\r\n\r\n',
  'GET /a/b?c=d&e HTTP/1.1\r\nHost: site.example:8080\r\nAccept: */*\r\nUser-Agent: fuzz\r\n\r\n',
  'HEAD /head HTTP/1.1\r\nHost: site.example\r\nRange: bytes=0-10\r\n\r\n',
  'GET /cond HTTP/1.1\r\nHost: site.example\r\nIf-None-Match: "x"\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\nCache-Control: no-cache\r\n\r\n',
  'GET http://site.example/abs HTTP/1.1\r\nHost: site.example\r\n\r\n',
  'GET /old HTTP/1.0\r\nHost: site.example\r\n\r\n',
  'POST /form HTTP/1.1\r\nHost: site.example\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello',
  'POST /chunked HTTP/1.1\r\nHost: site.example\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
  'PUT /put HTTP/1.1\r\nHost: [::1]:6081\r\nContent-Length: 0\r\nConnection: keep-alive, x-drop\r\nX-Drop: 1\r\n\r\n',
  'DELETE /del HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: a=b\r\nAuthorization: Bearer t\r\n\r\n',
  'OPTIONS /opt HTTP/1.1\r\nHost: site.example\r\nX-Request-Id: not a valid id\r\nTE: trailers\r\nVia: 1.1 edge\r\n\r\n',
  'GET /pipe HTTP/1.1\r\nHost: site.example\r\n\r\nGET /pipe2 HTTP/1.1\r\nHost: site.example\r\n\r\n',
];

const BYTES = ['\r', '\n', '\0', ' ', '\t', ':', '/', '@', '?', '#', '[', ']', ',', ';', '"', '\\', '%', '\x7f', '\x80', '\xff', 'A', '0'];
const TOKENS = [
  '\r\n', '\r\n\r\n', '\n', ' ', '\t', ':', '::', 'Host: other.example\r\n', 'Host: a/b\r\n', 'Host:\r\n', 'Transfer-Encoding: chunked\r\n',
  'Transfer-Encoding: identity, chunked\r\n', 'Transfer-Encoding: gzip\r\n', 'Content-Length: 5\r\n', 'Content-Length: -1\r\n',
  'Content-Length: 99999999999999999999\r\n', 'Connection: close\r\n', 'Connection: host, content-length\r\n', 'Expect: 100-continue\r\n',
  'Upgrade: websocket\r\n', 'X-Request-Id: fuzz\r\n', ' folded\r\n', 'HTTP/1.1', 'HTTP/2.0', 'CONNECT ', 'http://', '*', '0\r\n\r\n',
  'x'.repeat(300), '\u00e9', '%00',
];

/** 1-4 random mutations of a template, or (1 in 8) random printable bytes with line ends. */
function makeCase(rand: () => number): Buffer {
  const pick = <T,>(a: readonly T[]): T => a[Math.floor(rand() * a.length)]!;
  if (rand() < 0.125) {
    const alphabet = 'GETPOSHAD /:.-Hhost\r\n\t0123456789abcxyz;,=%"';
    let s = '';
    const n = 1 + Math.floor(rand() * 120);
    for (let i = 0; i < n; i++) s += alphabet[Math.floor(rand() * alphabet.length)];
    return Buffer.from(s, 'latin1');
  }
  let s = pick(TEMPLATES);
  const edits = 1 + Math.floor(rand() * 4);
  for (let e = 0; e < edits; e++) {
    const at = Math.floor(rand() * (s.length + 1));
    const r = rand();
    if (r < 0.3) s = s.slice(0, at) + pick(BYTES) + s.slice(at + 1); // replace a byte
    else if (r < 0.6) s = s.slice(0, at) + pick(TOKENS) + s.slice(at); // insert
    else if (r < 0.8) s = s.slice(0, at) + s.slice(at + 1 + Math.floor(rand() * 8)); // delete a few bytes
    else if (r < 0.9) {
      // duplicate one line
      const lines = s.split('\r\n');
      const i = Math.floor(rand() * lines.length);
      lines.splice(i, 0, lines[i]!);
      s = lines.join('\r\n');
    } else s = s.slice(0, at); // truncate
  }
  return Buffer.from(s, 'latin1');
}

type Outcome = { input: Buffer; output: Buffer; closed: boolean };

/**
 * Writes the case on its own connection. The client does not half-close at once (Node drops the requests
 * of a client that did, before answering them): it waits for the answers to go quiet, or, unless the
 * request is complete, for NO_ANSWER_MS without any byte (a head still incomplete), then half-closes, and
 * reads on until the proxy closes.
 */
function runCase(port: number, input: Buffer, complete: boolean): Promise<Outcome> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let closed = true;
    let wait: NodeJS.Timeout | undefined;
    const sock = net.connect(port, '127.0.0.1', () => {
      sock.write(input);
      // A complete request waits for its answer however long the machine takes (up to the guard).
      if (!complete) wait = setTimeout(() => sock.end(), NO_ANSWER_MS);
    });
    const guard = setTimeout(() => {
      closed = false;
      sock.destroy();
    }, CASE_GUARD_MS);
    sock.on('data', (c: Buffer) => {
      chunks.push(c);
      clearTimeout(wait);
      wait = setTimeout(() => sock.end(), QUIET_MS);
    });
    sock.on('error', () => undefined);
    sock.on('close', () => {
      clearTimeout(guard);
      clearTimeout(wait);
      resolve({ input, output: Buffer.concat(chunks), closed });
    });
  });
}

/** A whole request head and no body framing: the proxy has all it needs and must answer. */
function isComplete(input: Buffer): boolean {
  const text = input.toString('latin1');
  return /^[A-Z]+ \S+ HTTP\/1\.[01]\r\n[\s\S]*?\r\n\r\n/.test(text) && !/content-length|transfer-encoding/i.test(text);
}

/** The first response in `out` with its request id and Content-Length body (none for HEAD-like answers). */
function firstAnswer(out: Buffer): { id: string; status: number; body: string } | undefined {
  const text = out.toString('latin1');
  const end = text.indexOf('\r\n\r\n');
  if (!text.startsWith('HTTP/1.1 ') || end < 0) return undefined;
  const head = text.slice(0, end);
  const id = /\r\nx-request-id: *([^\r]+)/i.exec(head)?.[1];
  const len = /\r\ncontent-length: *(\d+)/i.exec(head)?.[1];
  if (!id || len === undefined) return undefined;
  return { id, status: Number(head.split(' ')[1]), body: text.slice(end + 4, end + 4 + Number(len)) };
}

/** Status codes of the responses in `out`, or a reason why it is not a sequence of HTTP/1.1 responses. */
function statusesOf(out: Buffer): number[] | string {
  const text = out.toString('latin1');
  if (text.length === 0) return [];
  if (!/^HTTP\/1\.1 \d{3} /.test(text)) return `does not start with a status line: ${JSON.stringify(text.slice(0, 80))}`;
  return [...text.matchAll(/(?:^|\r\n)HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
}

describe('request parser fuzz (issue 11 item 21)', () => {
  let h: Harness;
  let origin: http.Server;
  /** Origin requests by the X-Request-Id Lacquer gave them. */
  const byId = new Map<string, number>();
  const originProblems: string[] = [];

  beforeAll(async () => {
    origin = http.createServer((req, res) => {
      const id = String(req.headers['x-request-id']);
      byId.set(id, (byId.get(id) ?? 0) + 1);
      const hosts = req.rawHeaders.filter((_, i) => i % 2 === 0 && req.rawHeaders[i]!.toLowerCase() === 'host').length;
      if (hosts !== 1) originProblems.push(`${hosts} Host fields for ${req.method} ${req.url}`);
      req.resume();
      req.on('end', () => {
        // GET answers are cacheable and say which request made them, so a hit can be checked against
        // the request it answers: the cache-key integrity of item 1, under fuzz.
        const body = `${req.method === 'GET' ? 'made-for' : 'pass'} ${String(req.headers.host)} ${req.url}`;
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(Buffer.byteLength(body)), 'cache-control': req.method === 'GET' ? 'max-age=60' : 'no-store' });
        res.end(body);
      });
    });
    // Anything the origin cannot parse was forwarded by Lacquer: that is how smuggling starts.
    origin.on('clientError', (err: NodeJS.ErrnoException, socket: net.Socket) => {
      // A request cut off mid-body (the client's own body failed, so Lacquer aborted the upload) ends in
      // EOF or a reset: that is an abort, not a message the origin misread.
      if (err.code !== 'ECONNRESET' && err.code !== 'HPE_INVALID_EOF_STATE') originProblems.push(`origin could not parse what Lacquer sent: ${err.code}`);
      socket.destroy();
    });
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(origin.address() as net.AddressInfo).port}`;
    h = await startHarness({ config: { backends: [{ name: 'origin', url }] } });
  });

  afterAll(async () => {
    await h?.close();
    origin.closeAllConnections();
    await new Promise((r) => origin.close(r));
  });

  it(`${CASES} mutated and random request heads (seed ${SEED}): a 4xx or a valid answer, one origin request at most`, async () => {
    const port = Number(new URL(h.url).port);
    const rand = seededRandom(SEED);
    const inputs = Array.from({ length: CASES }, () => makeCase(rand));
    const failures: string[] = [];
    const answered: { where: string; id: string; status: number; body: string }[] = [];
    const tally = new Map<string, number>();
    let next = 0;
    const worker = async () => {
      while (next < inputs.length) {
        const n = next++;
        const complete = isComplete(inputs[n]!);
        const o = await runCase(port, inputs[n]!, complete);
        const where = `case ${n} (seed ${SEED}) ${JSON.stringify(o.input.toString('latin1'))}`;
        if (!o.closed) failures.push(`${where}: no answer and no close within ${CASE_GUARD_MS} ms`);
        const st = statusesOf(o.output);
        if (typeof st === 'string') {
          failures.push(`${where}: ${st}`);
          continue;
        }
        for (const s of st) {
          const k = `${Math.floor(s / 100)}xx`;
          tally.set(k, (tally.get(k) ?? 0) + 1);
          // 501: a Transfer-Encoding Lacquer will not re-frame. Any other 5xx is a failure of Lacquer's own.
          if (s >= 500 && s !== 501) failures.push(`${where}: answered ${s}: ${JSON.stringify(o.output.toString('latin1').slice(0, 300))}`);
        }
        if (st.length === 0) tally.set('silent', (tally.get('silent') ?? 0) + 1);
        if (st.length === 0 && complete) failures.push(`${where}: a complete request got no answer`);
        const first = firstAnswer(o.output);
        if (first) answered.push({ where, ...first });
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    // Every 200 to a GET, fresh from the origin or a hit, was made for that request's host and target.
    await new Promise((r) => setTimeout(r, 300)); // access lines are written when responses close
    const lines = new Map(h.log.access().map((l) => [l.id, l]));
    let checked = 0;
    for (const a of answered) {
      const l = lines.get(a.id);
      if (!l || l.method !== 'GET' || a.status !== 200 || !LACQUER_ID.test(a.id)) continue;
      checked++;
      const want = `made-for ${String(l.host).toLowerCase()} ${String(l.url)}`;
      if (a.body.replace(/^(made-for \S+)/, (m) => m.toLowerCase()) !== want) failures.push(`${a.where}: served ${JSON.stringify(a.body)} for ${JSON.stringify(want)} (${String(l.cache)})`);
    }
    expect(checked).toBeGreaterThan(CASES / 25);
    expect(failures.slice(0, 10)).toEqual([]);
    expect(originProblems.slice(0, 10)).toEqual([]);
    // Only ids Lacquer made count (a client may send its own X-Request-Id, and mutations repeat one).
    const twice = [...byId].filter(([id, n]) => n > 1 && LACQUER_ID.test(id));
    expect(twice).toEqual([]);
    expect(byId.size).toBeGreaterThan(CASES / 25);
    // the mix really exercised both sides: refusals and proxied answers
    expect(tally.get('4xx') ?? 0).toBeGreaterThan(CASES / 10);
    expect(tally.get('2xx') ?? 0).toBeGreaterThan(CASES / 10);
    // and the proxy is alive, with no bug reported by the pipeline
    expect((await h.get('/after')).status).toBe(200);
    expect(h.log.lines.filter((l) => l.level === 'error' || (l as { level?: unknown }).level === 50)).toEqual([]);
  }, 60_000);
});

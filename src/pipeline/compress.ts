// Compression: content codings negotiated per RFC 9110 §12.5.3, applied where they pay.
//
// - Every request's Accept-Encoding is kept for delivery and replaced, towards the cache and the origin, by
//   the codings Lacquer can decode: the origin's answer is one object whatever the client sent, so a
//   `Vary: Accept-Encoding` origin does not explode into one variant per browser's header.
// - A stored object is compressed once, in the background, into every configured coding; the forms live
//   with the object and are charged to `cache.memory`. Until they exist, a client gets a streamed coding.
// - Pass and miss responses are compressed as they stream.
// - An origin that compressed is left alone, and decoded for a client that does not accept its coding.
// - Never compressed: ranges, `Cache-Control: no-transform`, bodies under `min_size`, types not listed,
//   event streams, and forms that come out no smaller. A transformed body gets a weak ETag (§8.8.1).
import type { Writable } from 'node:stream';
import zlib, { type BrotliOptions, type ZlibOptions } from 'node:zlib';
import type { CachedObject, EncodedForms } from '../cache/object.ts';
import { parseCacheControl } from '../cache/cache-control.ts';
import type { Coding, CompressionConfig } from '../config/schema.ts';
import type { Exchange } from '../server/exchange.ts';
import type { ProxyContext } from './context.ts';

export type Choice = Coding | 'identity';

/** Codings Lacquer can decode (to serve a client that does not accept the origin's). */
const DECODABLE: ReadonlySet<string> = new Set(['gzip', 'x-gzip', 'br']);

/** A stored form must save at least this share, or the identity body is sent (incompressible content). */
const WORTH_IT = 0.95;

/** Stored forms are made once and served many times: the slow, small settings. */
const STORE_LEVEL: { br: BrotliOptions; gzip: ZlibOptions } = {
  br: { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 9 } },
  gzip: { level: 9 },
};
/** Streamed once per response: fast settings (nginx's `gzip_comp_level` is 1, brotli's usual dynamic level 4). */
const STREAM_LEVEL: { br: BrotliOptions; gzip: ZlibOptions } = {
  br: { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 4 } },
  gzip: { level: 6 },
};

type Header = string | string[] | undefined;
const first = (v: Header): string | undefined => (Array.isArray(v) ? v.join(', ') : v);

/**
 * Called once per request as it arrives. The client's Accept-Encoding is kept on the exchange; the header
 * the cache keys on and the origin receives becomes the codings Lacquer decodes.
 */
export function arrive(ctx: ProxyContext, ex: Exchange): void {
  const c = ctx.config.compression;
  if (!c.enabled) return;
  const req = ex.req;
  ex.acceptEncoding = first(req.headers['accept-encoding']);
  const normal = normalAcceptEncoding(c);
  req.headers['accept-encoding'] = normal;
  const raw = req.rawHeaders;
  if (ex.acceptEncoding !== undefined) {
    let w = 0;
    for (let i = 0; i < raw.length; i += 2) {
      if (raw[i]!.length === 15 && raw[i]!.toLowerCase() === 'accept-encoding') continue;
      raw[w++] = raw[i]!;
      raw[w++] = raw[i + 1]!;
    }
    raw.length = w;
  }
  raw.push('accept-encoding', normal);
}

/** The Accept-Encoding the cache keys on and the origin receives, made once per configuration. */
const normalForms = new WeakMap<CompressionConfig, string>();
function normalAcceptEncoding(c: CompressionConfig): string {
  let v = normalForms.get(c);
  if (v === undefined) normalForms.set(c, (v = c.encodings.length ? c.encodings.join(', ') : 'identity'));
  return v;
}

/** The client's acceptance of each coding (RFC 9110 §12.5.3): q-values, `*`, `identity`. */
export function parseAcceptEncoding(v: string | undefined): Map<string, number> | undefined {
  if (v === undefined) return undefined;
  const out = new Map<string, number>();
  for (const part of v.split(',')) {
    const [name, ...params] = part.split(';');
    const coding = name!.trim().toLowerCase();
    if (!coding) continue;
    let q = 1;
    for (const p of params) {
      const m = /^\s*q\s*=\s*([01](?:\.\d{0,3})?)\s*$/i.exec(p);
      if (m) q = Number(m[1]);
    }
    out.set(coding === 'x-gzip' ? 'gzip' : coding, Math.min(1, q));
  }
  return out;
}

/** Weight of identity when the header does not name it: acceptable (§12.5.3), but below any coding listed. */
const IMPLICIT_IDENTITY_Q = 0.001;

function qOf(accept: Map<string, number>, coding: string): number {
  const q = accept.get(coding);
  if (q !== undefined) return q;
  const star = accept.get('*');
  // identity is acceptable unless excluded by `identity;q=0` or by `*;q=0` (§12.5.3).
  if (coding === 'identity') return star === 0 ? 0 : IMPLICIT_IDENTITY_Q;
  return star ?? 0;
}

/**
 * The coding to send, among `offered` (preference order) and identity. No header: identity (RFC 9110
 * allows any coding then, but clients that send none are often ones that cannot decode). A coding wins
 * a tie with identity: compressing is the point. Nothing acceptable: identity anyway (§12.5.3 allows it).
 */
export function negotiate(header: string | undefined, offered: readonly string[]): string {
  const accept = parseAcceptEncoding(header);
  if (!accept) return 'identity';
  let best = 'identity';
  let bestQ = qOf(accept, 'identity');
  for (const c of offered) {
    const q = qOf(accept, c);
    if (q > 0 && (q > bestQ || (q === bestQ && best === 'identity'))) {
      best = c;
      bestQ = q;
    }
  }
  return best;
}

function typeMatches(types: readonly string[], contentType: string | undefined): boolean {
  if (!contentType) return false;
  const t = contentType.split(';')[0]!.trim().toLowerCase();
  // Compressing an event stream would hold its events back in the compressor's buffer.
  if (t === 'text/event-stream') return false;
  return types.some((r) => (r.endsWith('/*') ? t.startsWith(r.slice(0, -1)) : t === r));
}

/** The response fields that decide whether a body may be transformed at all. */
export type Shape = { status: number; contentType: string | undefined; contentEncoding: string | undefined; cacheControl: Header; contentRange: Header; length: number | undefined };

/** May Lacquer compress this identity body? */
export function compressible(c: CompressionConfig, s: Shape): boolean {
  if (!c.enabled || c.encodings.length === 0) return false;
  if (s.status < 200 || s.status === 204 || s.status === 206 || s.status === 304 || s.contentRange !== undefined) return false;
  if (s.contentEncoding !== undefined && s.contentEncoding.toLowerCase() !== 'identity') return false;
  if (s.length !== undefined && s.length < c.min_size) return false;
  if (noTransform(s.cacheControl)) return false;
  return typeMatches(c.types, s.contentType);
}

/** An origin coding Lacquer can undo for a client that does not accept it (never on a range: a slice cannot be decoded). */
function decodable(c: CompressionConfig, s: Shape): boolean {
  const ce = s.contentEncoding?.toLowerCase();
  return c.enabled && ce !== undefined && DECODABLE.has(ce) && s.status !== 206 && s.contentRange === undefined && !noTransform(s.cacheControl);
}

/** RFC 9111 §5.2.2.6 no-transform. Asked of every streamed response: parsed only when the text names it at all. */
function noTransform(cc: Header): boolean {
  const v = first(cc);
  return v !== undefined && /no-transform/i.test(v) && parseCacheControl(v).noTransform;
}

function shapeOfList(status: number, list: string[]): Shape {
  const s: Shape = { status, contentType: undefined, contentEncoding: undefined, cacheControl: undefined, contentRange: undefined, length: undefined };
  for (let i = 0; i < list.length; i += 2) {
    const name = list[i]!;
    const v = list[i + 1]!;
    if (name === 'content-type') s.contentType = v;
    else if (name === 'content-encoding') s.contentEncoding = s.contentEncoding ? `${s.contentEncoding}, ${v}` : v;
    else if (name === 'cache-control') s.cacheControl = s.cacheControl ? `${s.cacheControl as string}, ${v}` : v;
    else if (name === 'content-range') s.contentRange = v;
    else if (name === 'content-length') s.length = Number(v);
  }
  return s;
}

function shapeOfObject(o: CachedObject): Shape {
  const h = o.headers;
  return {
    status: o.status,
    contentType: first(h['content-type']),
    contentEncoding: first(h['content-encoding']),
    cacheControl: h['cache-control'],
    contentRange: h['content-range'],
    length: o.body.length,
  };
}

/**
 * Rewrites a header list for the body actually sent: Content-Encoding, Content-Length (dropped when
 * unknown), a weak ETag when the body was transformed, no Accept-Ranges (ranges are of the identity body).
 */
function recode(list: string[], coding: string, length: number | undefined, transformed: boolean): string[] {
  const out: string[] = [];
  for (let i = 0; i < list.length; i += 2) {
    const name = list[i]!;
    const v = list[i + 1]!;
    if (name === 'content-encoding' || name === 'content-length' || name === 'accept-ranges') continue;
    if (name === 'etag' && transformed && !v.startsWith('W/')) out.push(name, `W/${v}`);
    else out.push(name, v);
  }
  if (coding !== 'identity') out.push('content-encoding', coding);
  if (length !== undefined) out.push('content-length', String(length));
  return out;
}

/** RFC 9110 §12.5.5: the answer depends on Accept-Encoding; said once, unless Vary already says so (or `*`). */
export function addVary(list: string[]): void {
  for (let i = 0; i < list.length; i += 2) {
    if (list[i] === 'vary' && /(^|,)\s*(accept-encoding|\*)\s*(,|$)/i.test(list[i + 1]!)) return;
  }
  list.push('vary', 'accept-encoding');
}

function encoder(coding: string): import('node:stream').Transform {
  return coding === 'br' ? zlib.createBrotliCompress(STREAM_LEVEL.br) : zlib.createGzip(STREAM_LEVEL.gzip);
}

function decoder(coding: string): import('node:stream').Transform {
  return coding === 'br' ? zlib.createBrotliDecompress() : zlib.createGunzip();
}

/** Pipes a coder into the response; the response is aborted if the coder fails (a corrupt origin body). */
function interpose(ex: Exchange, z: import('node:stream').Transform): Writable {
  z.on('error', (err) => ex.res.destroy(err));
  z.pipe(ex.res as unknown as Writable);
  return z;
}

/**
 * A streamed origin response (miss or pass), before its head is sent: the header list is rewritten in
 * place and the body sink (`ex.sink`) set to a coder when the body is to be compressed or decoded.
 */
export function codeStream(ctx: ProxyContext, ex: Exchange, status: number, list: string[]): string[] {
  const c = ctx.config.compression;
  if (!c.enabled) return list;
  const s = shapeOfList(status, list);
  const head = ex.method === 'HEAD';
  if (compressible(c, s)) {
    addVary(list);
    const coding = ex.req.headers.range === undefined ? negotiate(ex.acceptEncoding, c.encodings) : 'identity';
    if (coding === 'identity' || head) return list;
    ex.sink = interpose(ex, encoder(coding));
    return recode(list, coding, undefined, true);
  }
  if (decodable(c, s)) {
    addVary(list);
    const ce = s.contentEncoding!.toLowerCase().replace('x-gzip', 'gzip');
    if (negotiate(ex.acceptEncoding, [ce]) === ce || head) return list;
    ex.sink = interpose(ex, decoder(ce));
    return recode(list, 'identity', undefined, true);
  }
  return list;
}

/** What deliverObject sends instead of the stored body as it is. */
export type StoredCoding = { list: string[]; body: Buffer } | { list: string[]; coder: import('node:stream').Transform; input: Buffer };

/**
 * A stored object, full (not a range). `list` is the object's kept head (deliver.ts fullHead), which already
 * says Vary: Accept-Encoding when the body may vary by coding (codingMayVary); the result is
 * undefined when the stored body goes out as it is, else the coded body (stored form, or a coder to run).
 */
export function codeStored(ctx: ProxyContext, ex: Exchange, o: CachedObject, list: string[]): StoredCoding | undefined {
  const c = ctx.config.compression;
  if (!c.enabled) return undefined;
  const memo = verdictOf(c, o);
  if (memo.kind === 'compress') {
    const coding = negotiate(ex.acceptEncoding, c.encodings);
    if (coding === 'identity') return undefined;
    const stored = ensureEncoded(ctx, o, memo).get(coding);
    if (stored === null) return undefined; // not worth it for this body
    if (stored) return { list: recode(list, coding, stored.length, true), body: stored };
    return { list: recode(list, coding, undefined, true), coder: encoder(coding), input: o.body };
  }
  if (memo.kind === 'decode') {
    const ce = first(o.headers['content-encoding'])!.toLowerCase().replace('x-gzip', 'gzip');
    if (negotiate(ex.acceptEncoding, [ce]) === ce) return undefined;
    return { list: recode(list, 'identity', undefined, true), coder: decoder(ce), input: o.body };
  }
  return undefined;
}

/** Whether codeStored may answer this object in another coding than stored, so that its answers carry Vary: Accept-Encoding. */
export function codingMayVary(c: CompressionConfig, o: CachedObject): boolean {
  return c.enabled && verdictOf(c, o).kind !== 'none';
}

/** Sends a coded stored body (the head is written by the caller). */
export function sendCoded(ex: Exchange, coded: StoredCoding): void {
  if ('body' in coded) {
    ex.bytesOut = ex.method === 'HEAD' ? 0 : coded.body.length;
    ex.res.end(ex.method === 'HEAD' ? undefined : coded.body);
    return;
  }
  if (ex.method === 'HEAD') {
    ex.res.end();
    return;
  }
  const z = coded.coder;
  z.on('data', (chunk: Buffer) => (ex.bytesOut += chunk.length));
  interpose(ex, z);
  z.end(coded.input);
}

class Forms implements EncodedForms {
  readonly config: object;
  readonly kind: EncodedForms['kind'];
  readonly forms = new Map<string, Buffer | null>();
  started = false;
  bytes = 0;
  constructor(config: object, kind: EncodedForms['kind']) {
    this.config = config;
    this.kind = kind;
  }
  /** Not persisted with snapshots: remade on the first delivery after a restart. */
  toJSON(): undefined {
    return undefined;
  }
}

/** The object's verdict (compress, decode or leave alone), made on its first delivery under this configuration: hits do not re-parse its fields. */
function verdictOf(c: CompressionConfig, o: CachedObject): EncodedForms {
  if (o.encoded?.config === c) return o.encoded;
  const s = shapeOfObject(o);
  o.encoded = new Forms(c, compressible(c, s) ? 'compress' : decodable(c, s) ? 'decode' : 'none');
  return o.encoded;
}

/**
 * The object's compressed forms: made once, in the background (zlib runs on the libuv pool), then kept
 * with it. Returns what exists now; the first callers get a streamed coding while the forms are made.
 */
function ensureEncoded(ctx: ProxyContext, o: CachedObject, forms: EncodedForms): Map<string, Buffer | null> {
  if (forms.started) return forms.forms;
  forms.started = true;
  const codings = ctx.config.compression.encodings;
  void Promise.all(codings.map((coding) => compressOnce(coding, o.body))).then(
    (outs) => {
      let bytes = 0;
      const made = new Map<string, Buffer | null>();
      outs.forEach((b, i) => {
        const worth = b.length < o.body.length * WORTH_IT;
        made.set(codings[i]!, worth ? b : null);
        if (worth) bytes += b.length;
      });
      // The forms are charged to cache.memory with the object. An object that would outgrow the largest
      // storable size keeps none: it is compressed per response instead.
      if (o.size + bytes > ctx.maxObjectBytes) {
        for (const k of made.keys()) made.set(k, null);
        bytes = 0;
      }
      for (const [k, v] of made) forms.forms.set(k, v);
      forms.bytes = bytes;
      // Stored again as a new entry (sharing body and forms): the store sizes an entry when it is set.
      if (bytes > 0 && ctx.store.peek(o.key) === o) ctx.store.put({ ...o, size: o.size + bytes }, Date.now());
    },
    () => undefined,
  );
  return forms.forms;
}

function compressOnce(coding: string, body: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const done = (err: Error | null, out: Buffer) => (err ? reject(err) : resolve(out));
    if (coding === 'br') zlib.brotliCompress(body, { ...STORE_LEVEL.br, params: { ...STORE_LEVEL.br.params, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: body.length } }, done);
    else zlib.gzip(body, STORE_LEVEL.gzip, done);
  });
}

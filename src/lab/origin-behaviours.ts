// Behaviour types, validation and pure helpers for the fault-injecting lab origin.

/** Options of an ordinary response; also the "what to send" part of most fault behaviours. */
export type NormalOpts = {
  /** Status code, default 200. */
  status?: number;
  /** Size of the generated deterministic body, default 1024 bytes (ignored when `body` is given). */
  bodySize?: number;
  /** Literal body (UTF-8). */
  body?: string;
  headers?: Record<string, string | string[]>;
  cacheControl?: string;
  etag?: string;
  /** An HTTP-date, e.g. `new Date(...).toUTCString()`. */
  lastModified?: string;
  /** Delay before the response head is sent. */
  delayMs?: number;
};

export type Behaviour =
  | ({ kind: 'normal' } & NormalOpts)
  /** Accept, read the request, never answer (socket stays open until close()/refuse()). */
  | { kind: 'hang' }
  /** Slow first byte: fixed, or uniformly distributed in [minMs, maxMs]. With `probability` (default 1) only
   *  that share of requests is slowed; the others answer `then` at once (a backend that is slow now and then). */
  | { kind: 'slow'; firstByteMs: number | { minMs: number; maxMs: number }; probability?: number; then?: NormalOpts }
  /** Head with the full Content-Length plus the first `afterBytes` body bytes, then silence (socket kept open).
   *  With `resumeAfterMs` the rest of the body is sent after that pause (a slow body rather than a dead one). */
  | { kind: 'stall'; afterBytes: number; resumeAfterMs?: number; then?: NormalOpts }
  /** Destroy the socket (TCP RST) before any response byte. */
  | { kind: 'reset-before-headers' }
  /** Head with the full Content-Length plus the first `afterBytes` body bytes, then TCP RST. With `probability`
   *  (default 1) only that share of responses is cut; the others are sent whole. */
  | { kind: 'reset-mid-body'; afterBytes: number; probability?: number; then?: NormalOpts }
  /** Write non-HTTP bytes (latin1 `payload`, default "\x16\x03\x01 garbage\r\n\r\n") and close. */
  | { kind: 'garbage'; payload?: string }
  /** A valid response whose head is at least `bytes` bytes (many `x-filler-N` headers). */
  | { kind: 'huge-headers'; bytes: number; then?: NormalOpts }
  /** Answer `status` (default 503) with probability `probability` (default 1), otherwise a normal response. */
  | { kind: 'error'; status?: number; probability?: number; body?: string; headers?: Record<string, string | string[]>; otherwise?: NormalOpts }
  /** Overloaded app. Load = concurrent in-flight requests at the origin (all paths, this one included) when the
   *  request head arrived. load > capacity → slowed by slowMs; load > failAbove (default 2×capacity) → 503.
   *  failDelayMs: the 503 comes after this delay (an app whose queue times out), and requests waiting for
   *  their 503 do not count as load (they hold no worker). */
  | { kind: 'capacity'; capacity: number; slowMs: number; failAbove?: number; failDelayMs?: number; then?: NormalOpts };

export type BehaviourKind = Behaviour['kind'];

export const BEHAVIOUR_KINDS: readonly BehaviourKind[] = [
  'normal', 'hang', 'slow', 'stall', 'reset-before-headers', 'reset-mid-body', 'garbage', 'huge-headers', 'error', 'capacity',
];

export const DEFAULT_BODY_SIZE = 1024;
export const DEFAULT_GARBAGE = '\x16\x03\x01 garbage\r\n\r\n';

// ---------------------------------------------------------------------------------------------
// Validation (for behaviours arriving as JSON over the control endpoint or `x-lab-behaviour`).

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function num(o: Obj, key: string, where: string, required: boolean, min = 0): void {
  const v = o[key];
  if (v === undefined && !required) return;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min) throw new Error(`${where}.${key} must be a number >= ${min}`);
}

function str(o: Obj, key: string, where: string): void {
  if (o[key] !== undefined && typeof o[key] !== 'string') throw new Error(`${where}.${key} must be a string`);
}

function status(o: Obj, key: string, where: string): void {
  const v = o[key];
  if (v === undefined) return;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 200 || v > 599) throw new Error(`${where}.${key} must be an integer in 200..599`);
}

function headers(o: Obj, key: string, where: string): void {
  const v = o[key];
  if (v === undefined) return;
  if (!isObj(v)) throw new Error(`${where}.${key} must be an object`);
  for (const [k, h] of Object.entries(v)) {
    const ok = typeof h === 'string' || (Array.isArray(h) && h.every((x) => typeof x === 'string'));
    if (!ok) throw new Error(`${where}.${key}[${k}] must be a string or string[]`);
  }
}

function probability(o: Obj, where: string): void {
  num(o, 'probability', where, false);
  if (typeof o.probability === 'number' && o.probability > 1) throw new Error(`${where}.probability must be <= 1`);
}

function normalOpts(v: unknown, where: string): void {
  if (v === undefined) return;
  if (!isObj(v)) throw new Error(`${where} must be an object`);
  status(v, 'status', where);
  num(v, 'bodySize', where, false);
  num(v, 'delayMs', where, false);
  for (const k of ['body', 'cacheControl', 'etag', 'lastModified']) str(v, k, where);
  headers(v, 'headers', where);
}

/** Checks that `v` is a well-formed Behaviour; throws an Error describing the first problem otherwise. */
export function parseBehaviour(v: unknown): Behaviour {
  if (!isObj(v)) throw new Error('behaviour must be a JSON object');
  const kind = v.kind;
  if (typeof kind !== 'string' || !(BEHAVIOUR_KINDS as readonly string[]).includes(kind)) {
    throw new Error(`behaviour.kind must be one of ${BEHAVIOUR_KINDS.join(', ')}`);
  }
  const w = kind;
  switch (kind) {
    case 'normal': normalOpts(v, w); break;
    case 'hang': case 'reset-before-headers': break;
    case 'slow': {
      const f = v.firstByteMs;
      if (isObj(f)) {
        num(f, 'minMs', `${w}.firstByteMs`, true);
        num(f, 'maxMs', `${w}.firstByteMs`, true);
        if ((f.maxMs as number) < (f.minMs as number)) throw new Error(`${w}.firstByteMs.maxMs must be >= minMs`);
      } else num(v, 'firstByteMs', w, true);
      probability(v, w);
      normalOpts(v.then, `${w}.then`);
      break;
    }
    case 'stall':
      num(v, 'afterBytes', w, true);
      num(v, 'resumeAfterMs', w, false);
      normalOpts(v.then, `${w}.then`);
      break;
    case 'reset-mid-body':
      num(v, 'afterBytes', w, true);
      probability(v, w);
      normalOpts(v.then, `${w}.then`);
      break;
    case 'garbage': str(v, 'payload', w); break;
    case 'huge-headers':
      num(v, 'bytes', w, true);
      normalOpts(v.then, `${w}.then`);
      break;
    case 'error':
      status(v, 'status', w);
      probability(v, w);
      str(v, 'body', w);
      headers(v, 'headers', w);
      normalOpts(v.otherwise, `${w}.otherwise`);
      break;
    case 'capacity':
      num(v, 'capacity', w, true, 1);
      num(v, 'slowMs', w, true);
      num(v, 'failAbove', w, false, 1);
      num(v, 'failDelayMs', w, false);
      normalOpts(v.then, `${w}.then`);
      break;
  }
  return v as Behaviour;
}

// ---------------------------------------------------------------------------------------------
// Bodies, conditionals, randomness.

const bodyCache = new Map<string, Buffer>();

/** The deterministic default body for a request target (path + query): `lacquer-lab <target>\n` repeated to `size` bytes. */
export function defaultBody(target: string, size: number = DEFAULT_BODY_SIZE): Buffer {
  const key = `${size}\u0000${target}`;
  const hit = bodyCache.get(key);
  if (hit) return hit;
  const unit = Buffer.from(`lacquer-lab ${target}\n`, 'utf8');
  const out = Buffer.alloc(size);
  for (let off = 0; off < size; off += unit.length) unit.copy(out, off, 0, Math.min(unit.length, size - off));
  if (bodyCache.size > 256) bodyCache.clear();
  if (size <= 1 << 20) bodyCache.set(key, out);
  return out;
}

/** Body bytes for NormalOpts: the literal `body`, or the default body of `bodySize` bytes. */
export function bodyFor(opts: NormalOpts, target: string): Buffer {
  if (opts.body !== undefined) return Buffer.from(opts.body, 'utf8');
  return defaultBody(target, opts.bodySize ?? DEFAULT_BODY_SIZE);
}

function opaque(tag: string): string {
  const t = tag.trim();
  return t.startsWith('W/') ? t.slice(2) : t;
}

/**
 * RFC 9110 §13.1.2/§13.1.3/§13.2.2 for GET/HEAD: true when the request's preconditions say "not modified".
 * If-None-Match (weak comparison, `*` matches) takes precedence; If-Modified-Since is only evaluated without it.
 */
export function notModified(
  reqHeaders: Record<string, string | string[] | undefined>,
  etag: string | undefined,
  lastModified: string | undefined,
): boolean {
  const inm = reqHeaders['if-none-match'];
  if (inm !== undefined) {
    if (etag === undefined) return false;
    const list = (Array.isArray(inm) ? inm.join(',') : inm).split(',').map((s) => s.trim()).filter(Boolean);
    return list.some((t) => t === '*' || opaque(t) === opaque(etag));
  }
  const ims = reqHeaders['if-modified-since'];
  if (typeof ims !== 'string' || lastModified === undefined) return false;
  const since = Date.parse(ims);
  const lm = Date.parse(lastModified);
  if (Number.isNaN(since) || Number.isNaN(lm)) return false;
  return lm <= since;
}

/** mulberry32: small seeded PRNG returning floats in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `count` filler headers totalling at least `bytes` bytes on the wire ("x-filler-N: aaaa…\r\n"). */
export function fillerHeaders(bytes: number): Record<string, string> {
  const out: Record<string, string> = {};
  const valueLen = 1000;
  let total = 0;
  for (let i = 0; total < bytes; i++) {
    const name = `x-filler-${i}`;
    const value = 'f'.repeat(valueLen);
    out[name] = value;
    total += name.length + 2 + value.length + 2;
  }
  return out;
}

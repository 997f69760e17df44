// The fleet coordinator on Redis (issue 13), with node-redis (README "Running a fleet" says why).
//
// Layout, every name under the prefix `lq:{fleet.name}:`:
//   o:{variant key}   hash {m: metadata JSON, b: body, i: soft-invalidated-at}, expiring with the object
//   v:{primary}       the URI's Vary field names (JSON)
//   k:{primary}       set of the URI's variant keys (purge reaches every variant)
//   t:{tag}           set of variant keys carrying the tag (purge by tag)
//   l:{variant key}   fetch lock: owner id, PX a little above first_byte
//   seq, log          invalidation sequence number and the last LOG_KEEP invalidations (catch-up)
//   channel bus       sequenced invalidations and lock releases
//
// Redis is never a new way to fail: every request-path call is bounded by `fleet.store.timeout` and
// resolves to "nothing shared" on error; commands are not queued while disconnected
// (disableOfflineQueue), so an outage costs a request nothing but the lookup it skips. A command already
// written cannot be recalled from Redis: past the timeout its answer is ignored.
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { createClient, RESP_TYPES } from 'redis';
import { banTest } from '../cache/invalidate.ts';
import type { FleetConfig } from '../config/schema.ts';
import type { CoordMessage, CoordStatus, Coordinator, FetchOutcome, Invalidation, LockResult, SharedObject, UnlockWait } from './types.ts';

type Client = ReturnType<typeof createClient>;

/** Invalidations kept for catch-up; an instance further behind drops its local cache. */
const LOG_KEEP = 1000;
/** Longest wait on Redis for work off the request path (writes, purges applied to the shared store). */
const BACKGROUND_TIMEOUT_MS = 2000;
/** Index sets (variants, tags) outlive their objects by this much, so a purge always finds every member. */
const INDEX_SLACK_MS = 60_000;
/** Largest number of invalidations made while Redis was unreachable, sent once it is back. */
const OUTBOX_MAX = 1000;

const BUFFERS = { typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer } };

/** INCR seq, append to the log, publish: one atomic step, so the sequence has no holes. */
const PUBLISH_SCRIPT = `
local s = redis.call('INCR', KEYS[1])
local e = '{"s":' .. s .. ',"f":' .. cjson.encode(ARGV[1]) .. ',"m":' .. ARGV[2] .. '}'
redis.call('LPUSH', KEYS[2], e)
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[4]) - 1)
redis.call('PUBLISH', ARGV[3], e)
return s`;

/** Deletes the lock only if we still own it (it may have expired and been taken over), then wakes waiters. */
const UNLOCK_SCRIPT = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1`;

/** Purges every variant of a URI: hard deletes them, soft marks them invalidated. */
const PURGE_SCRIPT = `
local keys = redis.call('SMEMBERS', KEYS[1])
for _, k in ipairs(keys) do
  if ARGV[2] == 'hard' then redis.call('DEL', ARGV[1] .. k) else
    if redis.call('EXISTS', ARGV[1] .. k) == 1 then redis.call('HSET', ARGV[1] .. k, 'i', ARGV[3]) end
  end
end
if ARGV[2] == 'hard' then redis.call('DEL', KEYS[1], KEYS[2]) end
return #keys`;

type BusEntry = { s: number; f: string; m: CoordMessage } | { u: string; o: FetchOutcome };

export class RedisCoordinator implements Coordinator {
  readonly id = randomUUID();
  readonly shared = true;
  readonly maxObjectBytes: number;
  readonly #timeoutMs: number;
  readonly #prefix: string;
  readonly #channel: string;
  readonly #log: Logger;
  readonly #client: Client;
  readonly #sub: Client;
  readonly #handlers = new Set<(m: CoordMessage) => void>();
  readonly #waiters = new Map<string, Set<(w: UnlockWait) => void>>();
  readonly #errors: Record<string, number> = {};
  readonly #pendingPuts = new Set<Promise<unknown>>();
  /** Invalidations made while Redis was unreachable: sent when it is back. */
  readonly #outbox: Invalidation[] = [];
  #state: 'up' | 'down' = 'down';
  #detail: string | undefined = 'connecting';
  /** Sequence number of the last invalidation applied here; undefined until first connected. */
  #lastSeq: number | undefined;
  #closed = false;

  constructor(config: FleetConfig, log: Logger) {
    this.maxObjectBytes = config.store.max_object_size;
    this.#timeoutMs = config.store.timeout;
    this.#prefix = `lq:${config.name}:`;
    this.#channel = `${this.#prefix}bus`;
    this.#log = log;
    this.#client = createClient({
      url: config.redis,
      // Fail at once while disconnected instead of queueing behind a dead socket.
      disableOfflineQueue: true,
      pingInterval: 1000,
      socket: {
        connectTimeout: 2000,
        // Exponential backoff with jitter, capped at 2 s: a restarted Redis is found again quickly,
        // and a fleet does not reconnect in lockstep.
        reconnectStrategy: (retries) => Math.min(2000, 50 * 2 ** Math.min(retries, 6)) + Math.floor(Math.random() * 100),
      },
    });
    this.#sub = this.#client.duplicate();
    this.#client.on('error', (err: Error) => this.#down('connection', err.message));
    this.#sub.on('error', (err: Error) => this.#down('connection', err.message));
    this.#client.on('ready', () => void this.#onReady());
    this.#sub.on('ready', () => void this.#catchUp());
    this.#client.connect().catch((err: Error) => this.#down('connect', err.message));
    this.#sub
      .connect()
      .then(() => this.#sub.subscribe(this.#channel, (msg) => this.#onBus(msg)))
      .catch((err: Error) => this.#down('subscribe', err.message));
  }

  // ── shared store ────────────────────────────────────────────────────────────────────────────────

  async lookup(primary: string, keyFor: (varyFields: readonly string[]) => string): Promise<SharedObject | undefined> {
    return this.#bounded('lookup', this.#timeoutMs, async (c) => {
      // Pipelined in one round trip: the URI's Vary, and its object if it has no Vary (the common case).
      const [vary, first] = await Promise.all([c.sendCommand<string | null>(['GET', this.#k('v', primary)]), this.#hgetall(c, this.#k('o', primary))]);
      if (vary === null) return undefined;
      const fields = JSON.parse(vary) as string[];
      const key = keyFor(fields);
      const h = fields.length === 0 ? first : await this.#hgetall(c, this.#k('o', key));
      return h && decodeHash(h, key);
    });
  }

  put(o: SharedObject, ttlMs: number): void {
    const ttl = String(Math.max(1, Math.ceil(ttlMs)));
    const indexTtl = String(Math.ceil(ttlMs) + INDEX_SLACK_MS);
    const meta = JSON.stringify({ primary: o.primary, varyFields: o.varyFields, tags: o.tags, meta: o.meta });
    const p = this.#bounded('put', BACKGROUND_TIMEOUT_MS, async (c) => {
      const m = c.multi();
      m.addCommand(['DEL', this.#k('o', o.key)]);
      m.addCommand(['HSET', this.#k('o', o.key), 'm', meta, 'b', o.body]);
      m.addCommand(['PEXPIRE', this.#k('o', o.key), ttl]);
      m.addCommand(['SET', this.#k('v', o.primary), JSON.stringify(o.varyFields), 'PX', indexTtl]);
      for (const set of [this.#k('k', o.primary), ...o.tags.map((t) => this.#k('t', t))]) {
        m.addCommand(['SADD', set, o.key]);
        // NX then GT (Redis 7): a new set gets the TTL, an existing one only ever a longer one.
        m.addCommand(['PEXPIRE', set, indexTtl, 'NX']);
        m.addCommand(['PEXPIRE', set, indexTtl, 'GT']);
      }
      await m.exec();
      return true;
    });
    this.#pendingPuts.add(p);
    void p.finally(() => this.#pendingPuts.delete(p));
  }

  // ── locks ───────────────────────────────────────────────────────────────────────────────────────

  async lock(key: string, ttlMs: number): Promise<LockResult> {
    const r = await this.#bounded('lock', this.#timeoutMs, (c) => c.sendCommand<string | null>(['SET', this.#k('l', key), this.id, 'NX', 'PX', String(Math.ceil(ttlMs))]));
    if (r === undefined) return { kind: 'unavailable' };
    if (r === null) return { kind: 'held' };
    return { kind: 'acquired', lock: { key, release: (outcome) => void this.#release(key, outcome) } };
  }

  async #release(key: string, outcome: FetchOutcome): Promise<void> {
    // Waiters look the object up as soon as they wake: it must be in Redis by then.
    await Promise.all(this.#pendingPuts);
    await this.#bounded('unlock', BACKGROUND_TIMEOUT_MS, (c) => c.sendCommand(['EVAL', UNLOCK_SCRIPT, '1', this.#k('l', key), this.id, this.#channel, JSON.stringify({ u: key, o: outcome })]));
  }

  waitUnlocked(key: string, ms: number): Promise<UnlockWait> {
    return new Promise<UnlockWait>((resolve) => {
      let set = this.#waiters.get(key);
      if (!set) this.#waiters.set(key, (set = new Set()));
      let expiry: NodeJS.Timeout | undefined;
      const done = (w: UnlockWait) => {
        clearTimeout(timer);
        clearTimeout(expiry);
        set.delete(done);
        if (set.size === 0 && this.#waiters.get(key) === set) this.#waiters.delete(key);
        resolve(w);
      };
      set.add(done);
      const timer = setTimeout(() => done('timeout'), ms);
      // The holder may die without a word: wake when its lock would expire, to take it over.
      void this.#bounded('lock', this.#timeoutMs, (c) => c.sendCommand<number>(['PTTL', this.#k('l', key)])).then((pttl) => {
        if (!set.has(done)) return;
        if (pttl === undefined || pttl < 0) return done('expired');
        expiry = setTimeout(() => done('expired'), pttl + 5);
      });
    });
  }

  // ── broadcast ───────────────────────────────────────────────────────────────────────────────────

  async publish(message: CoordMessage): Promise<void> {
    if (message.kind === 'invalidate') {
      if (!this.#client.isReady) {
        // Sent when Redis is back (#onReady), so the other instances still get it.
        if (this.#outbox.length < OUTBOX_MAX) this.#outbox.push(message.inv);
        this.#count('publish');
        return;
      }
      await this.#applyShared(message.inv);
    }
    await this.#bounded('publish', BACKGROUND_TIMEOUT_MS, (c) =>
      c.sendCommand(['EVAL', PUBLISH_SCRIPT, '2', this.#k('seq'), this.#k('log'), this.id, JSON.stringify(message), this.#channel, String(LOG_KEEP)]),
    );
  }

  subscribe(handler: (m: CoordMessage) => void): () => void {
    this.#handlers.add(handler);
    return () => this.#handlers.delete(handler);
  }

  /** Applies an invalidation to the shared store (the sender does it once for the whole fleet). */
  #applyShared(inv: Invalidation): Promise<unknown> {
    const objPrefix = this.#k('o', '');
    const now = String(Date.now());
    return this.#bounded('invalidate', BACKGROUND_TIMEOUT_MS, async (c) => {
      if (inv.op === 'purge') return c.sendCommand(['EVAL', PURGE_SCRIPT, '2', this.#k('k', inv.primary), this.#k('v', inv.primary), objPrefix, inv.mode, now]);
      if (inv.op === 'tags') {
        for (const t of inv.tags) {
          const keys = await c.sendCommand<string[]>(['SMEMBERS', this.#k('t', t)]);
          await this.#invalidateKeys(c, keys, inv.mode, now);
        }
        return;
      }
      // A ban or purge-all: walk the objects (SCAN, in batches, never KEYS: Redis keeps serving meanwhile).
      const test = inv.op === 'ban' ? banTest(inv.spec) : () => true;
      let cursor = '0';
      do {
        const [next, keys] = await c.sendCommand<[string, string[]]>(['SCAN', cursor, 'MATCH', `${objPrefix}*`, 'COUNT', '500']);
        cursor = next;
        const hit: string[] = [];
        for (const full of keys) {
          const key = full.slice(objPrefix.length);
          // The primary key is the variant key up to its first newline (cache/key.ts varyKey).
          const nl = key.indexOf('\n');
          if (test(nl < 0 ? key : key.slice(0, nl))) hit.push(key);
        }
        // Locally a ban spares objects stored after it; here an object written in the same instant may be
        // dropped too (checking would need each object's metadata): at worst one extra miss.
        await this.#invalidateKeys(c, hit, inv.mode, now);
      } while (cursor !== '0');
      return;
    });
  }

  async #invalidateKeys(c: Client, keys: readonly string[], mode: 'hard' | 'soft', now: string): Promise<void> {
    if (keys.length === 0) return;
    const m = c.multi();
    for (const k of keys) {
      if (mode === 'hard') m.addCommand(['DEL', this.#k('o', k)]);
      else m.addCommand(['EVAL', "if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'i', ARGV[1]) end return 1", '1', this.#k('o', k), now]);
    }
    await m.exec();
  }

  #onBus(raw: string): void {
    let e: BusEntry;
    try {
      e = JSON.parse(raw) as BusEntry;
    } catch {
      return;
    }
    if ('u' in e) {
      const set = this.#waiters.get(e.u);
      if (set) for (const w of [...set]) w(e.o === 'stored' ? 'stored' : 'not-stored');
      return;
    }
    if (this.#lastSeq !== undefined && e.s > this.#lastSeq + 1) {
      void this.#catchUp();
      return;
    }
    this.#deliver(e);
  }

  #deliver(e: { s: number; f: string; m: CoordMessage }): void {
    if (this.#lastSeq !== undefined && e.s <= this.#lastSeq) return;
    this.#lastSeq = e.s;
    if (e.f === this.id) return;
    for (const h of this.#handlers) h(e.m);
  }

  /** After a (re)connect or a gap: replays missed invalidations from the log, or resets when it cannot. */
  async #catchUp(): Promise<void> {
    const r = await this.#bounded('subscribe', BACKGROUND_TIMEOUT_MS, async (c) => {
      const [seq, log] = await Promise.all([c.sendCommand<string | null>(['GET', this.#k('seq')]), c.sendCommand<string[]>(['LRANGE', this.#k('log'), '0', '-1'])]);
      return { seq: Number(seq ?? 0), log: log.map((l) => JSON.parse(l) as { s: number; f: string; m: CoordMessage }).reverse() };
    });
    if (!r) return;
    const last = this.#lastSeq;
    if (last === undefined) {
      this.#lastSeq = r.seq; // first connection: nothing to catch up with
      return;
    }
    if (r.seq < last) {
      // Redis lost its data (restarted without persistence): invalidations may have been lost with it.
      this.#lastSeq = r.seq;
      return this.#reset(`Redis sequence went back from ${last} to ${r.seq} (restarted without its data)`);
    }
    const oldest = r.log[0]?.s ?? r.seq + 1;
    if (r.seq > last && oldest > last + 1) {
      this.#lastSeq = r.seq;
      return this.#reset(`missed invalidations ${last + 1}–${oldest - 1}, no longer in the log`);
    }
    for (const e of r.log) if (e.s > last) this.#deliver(e);
  }

  #reset(reason: string): void {
    for (const h of this.#handlers) h({ kind: 'reset', reason });
  }

  async #onReady(): Promise<void> {
    this.#up();
    await this.#catchUp();
    const pending = this.#outbox.splice(0);
    for (const inv of pending) await this.publish({ kind: 'invalidate', inv });
  }

  // ── plumbing ────────────────────────────────────────────────────────────────────────────────────

  #k(kind: string, rest = ''): string {
    return `${this.#prefix}${kind}${rest ? `:${rest}` : ''}`;
  }

  #hgetall(c: Client, key: string): Promise<Record<string, Buffer> | undefined> {
    return c.sendCommand<Record<string, Buffer> | Buffer[]>(['HGETALL', key], BUFFERS).then(toRecord);
  }

  /**
   * Runs `work` if Redis is ready, within `ms`; undefined on any failure (counted by op, logged once per
   * state change). The work's late answer, if any, is dropped.
   */
  async #bounded<T>(op: string, ms: number, work: (c: Client) => Promise<T>): Promise<T | undefined> {
    if (this.#closed) return undefined;
    if (!this.#client.isReady) {
      this.#count(op);
      return undefined;
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<typeof TIMED_OUT>((resolve) => (timer = setTimeout(() => resolve(TIMED_OUT), ms)));
    const run = work(this.#client);
    run.catch(() => undefined);
    try {
      const r = await Promise.race([run, timeout]);
      if (r === TIMED_OUT) {
        this.#count(op);
        this.#down(op, `no answer within ${ms}ms`);
        return undefined;
      }
      this.#up();
      return r;
    } catch (err) {
      this.#count(op);
      this.#down(op, (err as Error).message);
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  }

  #count(op: string): void {
    this.#errors[op] = (this.#errors[op] ?? 0) + 1;
  }

  #down(op: string, message: string): void {
    if (this.#closed) return;
    if (op === 'connection' || op === 'connect' || op === 'subscribe') this.#count(op);
    if (this.#state === 'down' && this.#detail !== 'connecting') return;
    const first = this.#detail === 'connecting';
    this.#state = 'down';
    this.#detail = `${op}: ${message}`;
    this.#log.warn({ type: 'fleet', op, err: message }, first ? `fleet: Redis not reachable yet (${message}); serving alone until it is` : `fleet: Redis failing (${op}: ${message}); serving from the local cache and the origin`);
  }

  #up(): void {
    if (this.#state === 'up') return;
    const was = this.#detail;
    this.#state = 'up';
    this.#detail = undefined;
    this.#log.info({ type: 'fleet', was }, 'fleet: Redis reachable; sharing');
  }

  status(): CoordStatus {
    return { state: this.#state, detail: this.#detail, errors: { ...this.#errors } };
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const set of this.#waiters.values()) for (const w of [...set]) w('timeout');
    await Promise.all(this.#pendingPuts);
    await Promise.all([this.#client, this.#sub].map((c) => (c.isOpen ? c.close().catch(() => c.destroy()) : undefined)));
  }
}

const TIMED_OUT = Symbol('timed out');

function toRecord(r: Record<string, Buffer> | Buffer[] | Map<Buffer | string, Buffer>): Record<string, Buffer> | undefined {
  // RESP3 answers a map, RESP2 a flat array.
  const out: Record<string, Buffer> = {};
  if (Array.isArray(r)) for (let i = 0; i + 1 < r.length; i += 2) out[r[i]!.toString()] = r[i + 1]!;
  else if (r instanceof Map) for (const [k, v] of r) out[k.toString()] = v;
  else Object.assign(out, r);
  return out['m'] && out['b'] ? out : undefined;
}

function decodeHash(h: Record<string, Buffer>, key: string): SharedObject | undefined {
  try {
    const m = JSON.parse(h['m']!.toString('utf8')) as { primary: string; varyFields: string[]; tags: string[]; meta: Record<string, unknown> };
    const i = h['i'] ? Number(h['i'].toString()) : undefined;
    return { key, primary: m.primary, varyFields: m.varyFields, tags: m.tags, meta: m.meta, body: h['b']!, ...(i !== undefined && Number.isFinite(i) ? { invalidatedAt: i } : {}) };
  } catch {
    return undefined;
  }
}

// One origin attempt as an explicit state machine (issue 9 item 5):
//
//   connecting ──sent──→ waiting ──headers──→ streaming ──end──→ done
//        │                  │                     │
//        └──────────────────┴──── error ──────────┴────────────→ failed
//        └──────────────────┴──── abandon ────────┴────────────→ done   (client left and nobody needs the
//                                                                        body, a status to retry, a bad 304)
//
// `step` is the whole transition table; `Run` applies it, and every side effect belongs to one
// transition. Leaving a state for `done` or `failed` happens in exactly one place (`#settle`): it gives
// the limiter its sample, records the attempt, stops listening for the client and resolves — once,
// whatever undici does (a synchronous error inside dispatch(), an error before the socket exists, a
// timeout racing the response) or the client does (leaving at any moment). A callback arriving in a
// state that does not accept it is ignored; an exception inside one fails the attempt instead of
// vanishing inside undici (the bug of issue 9: the coalescing flight of the URL stayed open for good).
//
// The client's response head is committed only with the first body byte, or at the end (issue 11 item
// 7): a body that breaks before its first byte leaves the client with nothing sent, so the caller can
// still answer the explained 502/503 (or a stale copy) instead of an empty reply that the log called 200.
// Once bytes went out, a failure aborts the client connection so a truncated body never looks whole.
// The cost: a response head that arrives long before its body (a long poll) reaches the client with it.
import type { CachedObject } from '../cache/object.ts';
import { ttlSeconds } from '../cache/object.ts';
import type { Headers, NotStorableReason, StoreDecision } from '../cache/storable.ts';
import { ProxyError, type ErrorType } from '../errors.ts';
import { traceHeaders } from '../observe/trace.ts';
import type { Backend } from '../upstream/backend.ts';
import type { LimitToken, LoadSignal } from '../upstream/limiter.ts';
import type { ProxyContext } from './context.ts';
import { deliverObject, startOriginResponse } from './deliver.ts';
import { fetchOnce, type FetchControl, type FetchHandle, type FetchSink } from './fetch.ts';
import type { ForwardPlan } from './forward.ts';
import { originRequestHeaders, responseHeaderList } from './headers.ts';
import { forwardInterim } from './interim.ts';
import { deliverStale, isErrorStatus, usableOnError } from './stale.ts';
import { BodyCollector, buildObject, contentLengthOf, freshenObject, storageDecision } from './store.ts';
import { proxyStatusForReceived } from './synth.ts';
import type { Route } from './route.ts';

export type AttemptState = 'connecting' | 'waiting' | 'streaming' | 'done' | 'failed';
export type AttemptEvent = 'sent' | 'headers' | 'end' | 'error' | 'abandon';

const TABLE: { readonly [S in AttemptState]: Partial<Record<AttemptEvent, AttemptState>> } = {
  connecting: { sent: 'waiting', headers: 'streaming', error: 'failed', abandon: 'done' },
  waiting: { headers: 'streaming', error: 'failed', abandon: 'done' },
  streaming: { end: 'done', error: 'failed', abandon: 'done' },
  done: {},
  failed: {},
};

/** The next state, or undefined when `event` means nothing in `state` (it is then ignored). */
export function step(state: AttemptState, event: AttemptEvent): AttemptState | undefined {
  return TABLE[state][event];
}

export function isFinal(state: AttemptState): boolean {
  return state === 'done' || state === 'failed';
}

/** `retry-status`: the origin answered a status in `retries.on_status`; the answer was dropped for a retry. */
export type AttemptResult = { kind: 'done' } | { kind: 'retry-status'; status: number } | { kind: 'failed'; error: ProxyError; responseStarted: boolean };

export type AttemptOptions = {
  fresh: boolean;
  timeouts: Route['timeouts'];
  retryStatus(status: number): boolean;
  /** The origin fetch (tests inject a failing one); default fetchOnce. */
  fetch?: typeof fetchOnce;
};

/** Not storable because of what the response said (not the request): remembered as hit-for-miss. */
const MARKABLE: ReadonlySet<NotStorableReason> = new Set(['no-store', 'private', 'set-cookie', 'vary-star', 'no-freshness', 'too-large', 'status']);

/** Largest origin error body kept to hand to coalesced waiters. */
const TRANSIENT_MAX_BYTES = 256 * 1024;

const TRANSIENT: Extract<StoreDecision, { store: true }> = {
  store: true,
  freshness: { lifetime: { ms: 0, source: 'none' }, initialAgeMs: 0, swrMs: 0, sieMs: 0, keepMs: 0, noStaleServe: true, alwaysRevalidate: true },
};

/** Statuses by which an origin says "too many requests now" (RFC 9110 §15.6.4, RFC 6585 §4). */
const OVERLOAD_STATUS: ReadonlySet<number> = new Set([429, 503]);
/** Failures that say the backend cannot take more right now (Netflix concurrency-limits counts timeouts as drops). */
const DROP_ERRORS: ReadonlySet<ErrorType> = new Set<ErrorType>(['connection_refused', 'connection_timeout', 'http_response_timeout']);

export function attempt(ctx: ProxyContext, plan: ForwardPlan, backend: Backend, retry: string | undefined, opts: AttemptOptions): Promise<AttemptResult> {
  return new Promise<AttemptResult>((resolve) => new Run(ctx, plan, backend, retry, opts, resolve).start());
}

/** What the client of this attempt is getting: nothing yet, an origin head held back until its first body byte, the origin's body, or nothing from us (answered elsewhere, or gone). */
type ClientMode = 'pending' | 'held' | 'streaming' | 'none';
type StoreMode = 'store' | 'transient' | 'none';
/** The stored copy's validators sent with the fetch (RFC 9111 §4.3.1). */
type Validators = { etag?: string; lastModified?: string } | undefined;

class Run {
  state: AttemptState = 'connecting';
  readonly #ctx: ProxyContext;
  readonly #plan: ForwardPlan;
  readonly #backend: Backend;
  readonly #retry: string | undefined;
  readonly #opts: AttemptOptions;
  readonly #resolve: (r: AttemptResult) => void;
  readonly #startedAt = performance.now();
  readonly #requestTimeMs: number;
  /** The store's invalidation epoch when the fetch began: an invalidation (§4.4) after it forbids storing what comes back. */
  readonly #epoch: number;
  readonly #token: LimitToken;
  #handle: FetchHandle | undefined;
  #control: FetchControl | undefined;
  #unsubscribe: (() => void) | undefined;
  #client: ClientMode;
  #store: StoreMode = 'none';
  #collector: BodyCollector | undefined;
  #decision: Extract<StoreDecision, { store: true }> | undefined;
  #status: number | undefined;
  #headers: Headers = {};
  #statusMessage = '';
  #responseTimeMs = 0;
  /** The client's head, held until the first body byte (or the end). */
  #held: { status: number; message: string; list: string[] } | undefined;
  #paused = false;
  #resolved = false;

  constructor(ctx: ProxyContext, plan: ForwardPlan, backend: Backend, retry: string | undefined, opts: AttemptOptions, resolve: (r: AttemptResult) => void) {
    this.#ctx = ctx;
    this.#plan = plan;
    this.#backend = backend;
    this.#retry = retry;
    this.#opts = opts;
    this.#resolve = resolve;
    this.#requestTimeMs = ctx.now();
    this.#epoch = ctx.store.epoch();
    this.#client = plan.client && !plan.client.clientGone ? 'pending' : 'none';
    // The caller holds a slot on the backend: this attempt is one of `active`.
    this.#token = backend.limiter.start(backend.slots.active);
  }

  get #cacheable(): boolean {
    return this.#plan.primary !== undefined;
  }

  start(): void {
    const ctx = this.#ctx;
    const plan = this.#plan;
    const ex = plan.source;
    // Listen for the client before dispatching: undici may report a failure before dispatch() returns.
    this.#unsubscribe = plan.client?.onGone(() => this.#guard(() => this.#clientGone()));
    const revalidate = this.#revalidate();
    const sink: FetchSink = {
      onStart: () => this.#guard(() => this.#go('sent')),
      onInterim: (st, h, msg) =>
        this.#guard(() => {
          // 103 Early Hints and other 1xx go to a waiting HTTP/1.1 client (interim.ts); they are never stored.
          if (plan.client && this.#client === 'pending' && !isFinal(this.state)) forwardInterim(plan.client, st, h, msg, ctx.via);
        }),
      onHeaders: (st, h, msg, ctl) => this.#guard(() => this.#onHeaders(st, h, msg, ctl, revalidate)),
      onData: (chunk) => this.#guard(() => this.#onData(chunk)),
      onEnd: () => this.#guard(() => this.#onEnd()),
      onError: (err) => this.#guard(() => this.#onError(err)),
    };
    this.#guard(() => {
      const handle = (this.#opts.fetch ?? fetchOnce)(
        this.#backend,
        {
          method: this.#cacheable ? 'GET' : ex.method,
          path: ex.target,
          headers: originRequestHeaders(ex.req, {
            requestId: ex.id,
            via: ctx.via,
            trustForwarded: ctx.config.proxy.trust_forwarded,
            hostHeader: this.#backend.hostHeader,
            cacheFetch: this.#cacheable,
            revalidate,
            ...traceHeaders(ex),
          }),
          body: plan.body,
          responseHeaderSize: ctx.config.limits.response_header_size,
        },
        sink,
        { fresh: this.#opts.fresh, timeouts: this.#opts.timeouts },
      );
      this.#handle = handle;
      // Settled while dispatching (a synchronous failure, or the client already gone): nothing more to run.
      if (isFinal(this.state)) handle.abort();
    });
  }

  #revalidate(): Validators {
    const s = this.#plan.stale;
    return this.#cacheable && s && (s.etag || s.lastModified) ? { etag: s.etag, lastModified: s.lastModified } : undefined;
  }

  /** Applies one transition; false when the event means nothing now (a late or duplicate callback). */
  #go(event: AttemptEvent): boolean {
    const next = step(this.state, event);
    if (next === undefined) return false;
    this.state = next;
    return true;
  }

  /** Runs a callback; an exception fails the attempt rather than disappearing into undici's handler. */
  #guard(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      if (isFinal(this.state)) return;
      const error = new ProxyError({ type: 'proxy_internal_error', phase: this.#status === undefined ? 'send' : 'body', source: 'internal', backend: this.#backend.name, cause: err, message: `Attempt failed inside the proxy: ${(err as Error)?.message ?? String(err)}` });
      this.#handle?.abort();
      this.#failed(error);
    }
  }

  #onHeaders(st: number, h: Headers, msg: string, ctl: FetchControl, revalidate: Validators): void {
    if (!this.#go('headers')) return;
    const ctx = this.#ctx;
    const plan = this.#plan;
    const client = plan.client;
    this.#control = ctl;
    this.#status = st;
    if (st >= 500 && this.#opts.retryStatus(st)) {
      // retries.on_status: this answer is dropped unseen and the request tried on another backend.
      return this.#abandon({ kind: 'retry-status', status: st });
    }
    this.#headers = h;
    this.#statusMessage = msg;
    this.#responseTimeMs = ctx.now();
    const pending = () => client !== null && this.#client === 'pending';
    if (this.#cacheable) {
      const primary = plan.primary!;
      const reqHeaders = plan.source.req.headers as Headers;
      if (st === 304) return this.#notModified(h, revalidate);
      if (isErrorStatus(st) && pending() && usableOnError(plan.stale, this.#responseTimeMs)) {
        // Never let an origin error replace a good object: the stale copy answers instead.
        client!.proxyStatus = proxyStatusForReceived(ctx.name, st, this.#backend.name);
        deliverStale(ctx, client!, plan.stale, this.#responseTimeMs, `stale-if-error; received-status=${st}`, st);
        this.#client = 'none';
      }
      const d = storageDecision(ctx, reqHeaders, st, h, this.#requestTimeMs, this.#responseTimeMs, plan.route?.policy);
      if (d.store) {
        this.#decision = d;
        this.#store = 'store';
        this.#collector = new BodyCollector(ctx.maxObjectBytes, contentLengthOf(h));
        ctx.passMarks.delete(primary);
      } else if (st >= 500 && plan.flight) {
        // Waiters get the same origin error instead of each sending their own request.
        this.#decision = TRANSIENT;
        this.#store = 'transient';
        this.#collector = new BodyCollector(TRANSIENT_MAX_BYTES, contentLengthOf(h));
      } else {
        if (MARKABLE.has(d.reason)) {
          ctx.passMarks.set(primary, true);
          // The origin's current answer may not be stored: the older copy must not keep being
          // served (stale-while-revalidate or stale-if-error would hand it out for their whole window).
          if (plan.stale) ctx.store.delete(plan.stale.key);
        }
        plan.flight?.settle({ kind: 'uncacheable' });
      }
      if (pending()) {
        client!.cache = { hit: false, fwd: plan.fwd, fwdStatus: st, stored: this.#store === 'store', collapsed: client!.cache.collapsed, detail: d.store ? undefined : `not-stored=${d.reason}` };
      }
    } else if (client) {
      client.cache = { hit: false, fwd: plan.fwd, fwdStatus: st };
      client.originHeaders = h;
    }
    if (pending()) {
      if (st >= 500) client!.proxyStatus = proxyStatusForReceived(ctx.name, st, this.#backend.name);
      client!.served = 'origin';
      this.#held = { status: st, message: msg, list: responseHeaderList(h, ctx.via) };
      this.#client = 'held';
    }
    // Nobody needs the body: stop the transfer.
    if (this.#client === 'none' && this.#store === 'none') this.#abandon({ kind: 'done' });
  }

  /** RFC 9111 §4.3.3/§4.3.4: the origin validated (or not) the stored copy we asked about. */
  #notModified(h: Headers, revalidate: Validators): void {
    const ctx = this.#ctx;
    const plan = this.#plan;
    const client = plan.client;
    const reqHeaders = plan.source.req.headers as Headers;
    // Client validators are never forwarded on a cache fetch, so a 304 answers ours (§4.3.3).
    const f = revalidate && plan.stale ? freshenObject(ctx, plan.stale, reqHeaders, h, this.#requestTimeMs, this.#responseTimeMs, plan.route?.policy) : ({ kind: 'mismatch' } as const);
    if (f.kind === 'mismatch') {
      // A 304 for a validator we did not send: the stored body is not known to be current, and the 304
      // has none to give the client. Drop the copy; report the origin's answer as invalid.
      if (plan.stale) ctx.store.delete(plan.stale.key);
      this.#handle?.abort();
      const error = new ProxyError({ type: 'http_protocol_error', phase: 'wait_headers', backend: this.#backend.name, headersReceived: true, code: 'unexpected_304', context: { sent: revalidate ?? null, etag: h['etag'] ?? null } });
      return this.#failed(error);
    }
    const stored = f.kind === 'fresh' && ctx.store.put(f.object, this.#responseTimeMs, this.#epoch);
    if (f.kind === 'fresh') plan.flight?.settle({ kind: 'object', object: f.object, stored });
    else {
      // §4.3.4: the 304 now forbids storing: the validated body answers this request only.
      ctx.store.delete(plan.stale!.key);
      if (MARKABLE.has(f.reason)) ctx.passMarks.set(plan.primary!, true);
      plan.flight?.settle({ kind: 'uncacheable' });
    }
    if (client && this.#client === 'pending') {
      client.served = 'origin';
      client.cache = {
        hit: false,
        fwd: plan.fwd,
        fwdStatus: 304,
        ttl: stored ? ttlSeconds(f.object, this.#responseTimeMs) : undefined,
        stored,
        collapsed: client.cache.collapsed,
        detail: f.kind === 'not-storable' ? `not-stored=${f.reason}` : undefined,
      };
      deliverObject(ctx, client, f.object, this.#responseTimeMs);
    }
    this.#client = 'none';
    // The 304 has no body: undici's end follows and settles the attempt.
  }

  #onData(chunk: Buffer): void {
    if (this.state !== 'streaming') return;
    const client = this.#plan.client;
    if (this.#collector && !this.#collector.add(chunk)) {
      this.#stopStoring('too-large');
      if (client) client.cache = { ...client.cache, stored: false };
      if (this.#client === 'none') return this.#abandon({ kind: 'done' });
    }
    if (this.#client === 'held') this.#commit();
    if (this.#client !== 'streaming') return;
    // A HEAD answered from a cache fetch (a GET, so the body can be stored) sends no body (RFC 9110 §9.3.2).
    // Node's HTTP/1.1 response drops it; HTTP/2's ended the stream with the head, so a write there destroyed
    // the stream without its response ever emitting 'close': the request stayed in flight for good, no access
    // line, and a SIGTERM waited the whole drain_timeout.
    if (client!.method === 'HEAD') return;
    client!.bytesOut += chunk.length;
    if (!client!.sink.write(chunk) && !this.#paused) {
      this.#paused = true;
      this.#control?.pause();
      client!.sink.once('drain', () => {
        this.#paused = false;
        this.#control?.resume();
      });
    }
  }

  #onEnd(): void {
    if (this.state !== 'streaming') return;
    const plan = this.#plan;
    if (this.#collector && this.#decision && this.#store !== 'none') {
      const object: CachedObject = buildObject(this.#ctx, {
        primary: plan.primary!,
        reqHeaders: plan.source.req.headers as Headers,
        status: this.#status!,
        statusMessage: this.#statusMessage,
        headers: this.#headers,
        body: this.#collector.body(),
        decision: this.#decision,
        requestTimeMs: this.#requestTimeMs,
        responseTimeMs: this.#responseTimeMs,
      });
      const stored = this.#store === 'store' && this.#ctx.store.put(object, this.#ctx.now(), this.#epoch);
      plan.flight?.settle({ kind: 'object', object, stored });
    }
    if (this.#client === 'held') this.#commit();
    if (this.#client === 'streaming') plan.client!.sink.end();
    this.#go('end');
    this.#settle({ kind: 'done' });
  }

  #onError(err: ProxyError): void {
    if (isFinal(this.state)) return;
    this.#store = 'none';
    this.#collector = undefined;
    const client = this.#plan.client;
    if (this.#client === 'streaming') {
      // Mid-body failure after bytes went out: abort the client connection so it cannot mistake a
      // truncated body for a whole one (FAILURES.md connection_read_timeout, http_response_incomplete).
      client!.res.destroy(err);
      this.#client = 'none';
      return this.#failed(err, true);
    }
    if (this.#client === 'held' && client) {
      // Nothing reached the client yet: forget the origin's head, the caller answers with the
      // explained error or a stale copy, and the log says what the client got (issue 11 item 7).
      this.#held = undefined;
      this.#client = 'pending';
      client.cache = { hit: false, fwd: this.#plan.fwd, collapsed: client.cache.collapsed };
      client.proxyStatus = undefined;
      client.originHeaders = undefined;
    }
    this.#failed(err, client?.res.headersSent ?? false);
  }

  /** The client left. The fetch goes on while the body is being stored or others wait for it. */
  #clientGone(): void {
    const wasPaused = this.#client === 'streaming' && this.#paused;
    // 'none' before resuming: resume() can deliver buffered chunks at once, and onData must not write them
    // to the gone client (whose refused write paused the fetch again for good, issue 11 item 6).
    this.#client = 'none';
    if (wasPaused) {
      this.#paused = false;
      this.#control?.resume();
    }
    if (isFinal(this.state)) return;
    const flight = this.#plan.flight;
    const needed = this.#store !== 'none' || (flight !== undefined && flight.waiters > 0) || (this.#status === undefined && this.#cacheable);
    if (!needed) this.#abandon({ kind: 'done' });
  }

  /** Sends the held head: the first body byte (or the end) is here. */
  #commit(): void {
    const h = this.#held!;
    this.#held = undefined;
    this.#client = 'streaming';
    startOriginResponse(this.#ctx, this.#plan.client!, h.status, h.message, h.list);
  }

  #stopStoring(reason: NotStorableReason): void {
    const plan = this.#plan;
    if (this.#store === 'store') {
      if (MARKABLE.has(reason)) this.#ctx.passMarks.set(plan.primary!, true);
      if (plan.stale) this.#ctx.store.delete(plan.stale.key); // superseded by an answer too large to store
      plan.flight?.settle({ kind: 'uncacheable' });
    } else if (this.#store === 'transient') plan.flight?.settle({ kind: 'uncacheable' });
    this.#store = 'none';
    this.#collector = undefined;
  }

  /** We stop the attempt ourselves: nobody needs the rest, or the status is to be retried. */
  #abandon(r: AttemptResult): void {
    if (!this.#go('abandon')) return;
    this.#handle?.abort();
    this.#settle(r);
  }

  #failed(error: ProxyError, responseStarted = false): void {
    if (!this.#go('error')) return;
    this.#settle({ kind: 'failed', error, responseStarted });
  }

  /** The one exit: every path to `done` or `failed` ends here, exactly once. */
  #settle(r: AttemptResult): void {
    if (!isFinal(this.state) || this.#resolved) return;
    this.#resolved = true;
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    this.#backend.limiter.finish(this.#token, this.#loadSignal(r));
    const ms = Math.round(performance.now() - this.#startedAt);
    const retry = this.#retry ? { retry: this.#retry } : {};
    const ex = this.#plan.source;
    ex.attempts.push(
      r.kind !== 'failed'
        ? { backend: this.#backend.name, outcome: 'ok', status: this.#status, ms, ...retry }
        : { backend: this.#backend.name, outcome: r.error.type, ms, reused: r.error.reused, ...retry },
    );
    const client = this.#plan.client;
    if (client) {
      client.backend = this.#backend.name;
      client.ttfbMs = this.#handle?.ttfbMs();
    }
    this.#resolve(r);
  }


  /** What this attempt tells the backend's concurrency limiter. */
  #loadSignal(r: AttemptResult): LoadSignal {
    const st = this.#status;
    if (st !== undefined) {
      if (OVERLOAD_STATUS.has(st)) return { kind: 'drop', overloaded: true };
      const ttfb = this.#handle?.ttfbMs();
      return ttfb === undefined ? { kind: 'none' } : { kind: 'ok', rttMs: ttfb };
    }
    if (r.kind === 'failed' && DROP_ERRORS.has(r.error.type)) return { kind: 'drop', overloaded: false };
    return { kind: 'none' };
  }
}


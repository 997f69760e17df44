// Forward: choose a backend, fetch, retry if the single retry decision allows, then stream the answer
// to the client while copying it into the store — or, on failure, serve stale or the explained error.
import type { Readable } from 'node:stream';
import type { CachedObject } from '../cache/object.ts';
import { ttlSeconds } from '../cache/object.ts';
import type { Headers, NotStorableReason, StoreDecision } from '../cache/storable.ts';
import { ProxyError } from '../errors.ts';
import type { Exchange, FwdReason } from '../server/exchange.ts';
import type { Backend } from '../upstream/backend.ts';
import type { BackendPool } from '../upstream/pool.ts';
import type { Flight } from './coalesce.ts';
import type { ProxyContext } from './context.ts';
import { deliverObject, deliverSimple, startOriginResponse } from './deliver.ts';
import { fetchOnce, type FetchControl } from './fetch.ts';
import { forwardInterim } from './interim.ts';
import { originRequestHeaders, responseHeaderList } from './headers.ts';
import { traceHeaders } from '../observe/trace.ts';
import { admit, takeSlot, unavailable } from './choose.ts';
import { bufferBody } from './replay.ts';
import { decideRetry, isIdempotent, type NoRetry, type RetryDecision, type RetryReason } from './retry.ts';
import type { Route } from './route.ts';
import { verdictOf } from '../upstream/health/outlier.ts';
import { deliverStale, isErrorStatus, usableOnError } from './stale.ts';
import { BodyCollector, buildObject, freshenObject, storageDecision } from './store.ts';
import { proxyStatusForError, proxyStatusForReceived, synthError } from './synth.ts';

export type ForwardPlan = {
  pool: BackendPool;
  /** Cache key when the answer may be stored; undefined for a pass (not cacheable by method). */
  primary: string | undefined;
  /** Stored object to revalidate, and to stand in if the origin fails (when its state allows). */
  stale: CachedObject | undefined;
  /** The coalesced fetch this request leads, if any. */
  flight: Flight | undefined;
  fwd: FwdReason;
  /** The client to answer; null for a background refresh. */
  client: Exchange | null;
  /** The request whose method, target and headers are forwarded. */
  source: Exchange;
  /** Request body: a stream, a buffer (replayable), or null when there is none. */
  body: Readable | Buffer | null;
  /** The route (pool, timeouts, retry policy, TTL overrides); absent: the pool's defaults. */
  route?: Route;
};

/** `retry-status`: the origin answered a status in `retries.on_status`; the answer was dropped for a retry. */
type AttemptResult = { kind: 'done' } | { kind: 'retry-status'; status: number } | { kind: 'failed'; error: ProxyError; responseStarted: boolean };

type AttemptOptions = { fresh: boolean; timeouts: Route['timeouts']; retryStatus(status: number): boolean };

/** Not storable because of what the response said (not the request): remembered as hit-for-miss. */
const MARKABLE: ReadonlySet<NotStorableReason> = new Set(['no-store', 'private', 'set-cookie', 'vary-star', 'no-freshness', 'too-large', 'status']);

/** Largest origin error body kept to hand to coalesced waiters. */
const TRANSIENT_MAX_BYTES = 256 * 1024;

const TRANSIENT: Extract<StoreDecision, { store: true }> = {
  store: true,
  freshness: { lifetime: { ms: 0, source: 'none' }, initialAgeMs: 0, swrMs: 0, sieMs: 0, keepMs: 0, noStaleServe: true, alwaysRevalidate: true },
};

export async function forward(ctx: ProxyContext, plan: ForwardPlan): Promise<void> {
  if (plan.client) plan.client.cache = { hit: false, fwd: plan.fwd, collapsed: plan.client.cache.collapsed };
  const admission = await admit(plan.pool, plan.client);
  if (admission.kind === 'gone') return;
  if (admission.kind === 'refused') return fail(ctx, plan, admission.error, false);
  try {
    await attempts(ctx, plan);
  } finally {
    admission.release();
  }
}

/** The attempt loop: choose a backend, take a slot on it, fetch; on failure the single retry decision. */
async function attempts(ctx: ProxyContext, plan: ForwardPlan): Promise<void> {
  const ex = plan.source;
  const pool = plan.pool;
  const policy = plan.route?.retries ?? pool.settings.retries;
  const method = plan.primary !== undefined ? 'GET' : ex.method;
  if (plan.body && !Buffer.isBuffer(plan.body) && isIdempotent(method)) {
    const b = await bufferBody(plan.body, ex.req.headers['content-length'], policy.body_buffer);
    if (b.kind === 'failed') return fail(ctx, plan, new ProxyError({ type: 'http_request_error', phase: 'send', source: 'downstream', message: "The client's request body could not be read." }), false);
    if (b.kind === 'buffered') plan.body = b.body;
  }
  const key = pool.hashKeyOf(ex.host, ex.target, ex.req.headers as Headers);
  // Panic mode may send a request to a backend health calls sick; not when a stale copy can answer instead.
  const allowPanic = !usableOnError(plan.stale, Date.now());
  const tried = new Set<Backend>();
  let count = 0;
  let staleKeepaliveRetried = false;
  let retry: RetryReason | undefined;
  let last: Backend | undefined;
  let lastError: ProxyError | undefined;
  /** The current attempt is its backend's half-open trial. */
  let trial = false;
  /** The backend of the failed attempt had failed before it too, or is now out (after `judge`). */
  const failing = (b: Backend) => b.health.outlier.consecutive >= 2 || b.health.outlier.phase(Date.now()) !== 'in';
  const decide = (error: ProxyError | undefined, status: number | undefined, responseStarted: boolean): RetryDecision =>
    decideRetry({
      error,
      status,
      method,
      replayable: plan.body === null || Buffer.isBuffer(plan.body),
      responseStarted,
      attempts: count,
      policy,
      elapsedMs: ex.elapsedMs(),
      otherBackend: pool.hasCandidate(tried, allowPanic),
      staleKeepaliveRetried,
      budgetAvailable: pool.budget.available(),
      trial,
      backendFailing: last !== undefined && failing(last),
    });
  /** A retry was decided: it takes from the budget only when the failure may have put load on an origin. */
  const spend = (d: Extract<RetryDecision, { retry: true }>) => (d.free ? pool.budget.spendFree() : pool.budget.spend());
  /** No retry: the access log and the failure report say why (`retry_refused`). */
  const refuse = (why: NoRetry) => {
    ex.retryRefused = why;
    if (why === 'budget') pool.budget.deny();
  };
  /**
   * Consulted when response headers arrive: a status in `on_status` (or a failure status answering a
   * half-open trial) is retried before the client sees it.
   */
  const retryStatus = (status: number): boolean => {
    if (!policy.on_status.includes(status) && !(trial && pool.settings.health.failure_statuses.includes(status))) return false;
    const d = decide(undefined, status, false);
    if (d.retry) spend(d);
    else refuse(d.why);
    return d.retry;
  };
  pool.budget.request();
  for (;;) {
    const backend = retry === 'stale-keepalive' && last ? last : pool.choose({ exclude: tried, key, allowPanic });
    if (!backend) return fail(ctx, plan, lastError ?? unavailable(pool), false);
    trial = backend.health.outlier.trial;
    tried.add(backend);
    last = backend;
    count++;
    ctx.stats.originFetches++;
    const slot = await takeSlot(pool, backend, plan.client);
    if (slot.kind === 'gone') return pool.report(backend, 'neutral');
    let r: AttemptResult;
    if (slot.kind === 'refused') {
      ex.attempts.push({ backend: backend.name, outcome: slot.error.type, ms: Math.round(slot.error.elapsedMs ?? 0), ...(retry ? { retry } : {}) });
      r = { kind: 'failed', error: slot.error, responseStarted: false };
    } else {
      try {
        r = await attempt(ctx, plan, backend, retry, { fresh: retry === 'stale-keepalive', timeouts: plan.route?.timeouts, retryStatus });
      } finally {
        slot.release();
      }
    }
    judge(pool, backend, r, ex, plan.client);
    if (r.kind === 'done') return;
    let reason: RetryReason = 'status';
    if (r.kind === 'failed') {
      lastError = r.error;
      const d = decide(r.error, undefined, r.responseStarted);
      if (!d.retry || plan.client?.clientGone) {
        if (!d.retry) refuse(d.why);
        return fail(ctx, plan, r.error, r.responseStarted);
      }
      spend(d);
      reason = d.reason;
    }
    if (reason === 'stale-keepalive') {
      staleKeepaliveRetried = true;
      backend.counters.staleKeepaliveRetries++;
    }
    retry = reason;
  }
}

/** What the attempt says about its backend (passive health), and its counters. */
function judge(pool: BackendPool, backend: Backend, r: AttemptResult, ex: Exchange, client: Exchange | null): void {
  const statuses = pool.settings.health.failure_statuses;
  if (r.kind === 'failed') {
    const c = backend.counters.errorsByClass;
    c[r.error.type] = (c[r.error.type] ?? 0) + 1;
    return pool.report(backend, verdictOf({ error: r.error }, statuses), r.error.type);
  }
  if (r.kind === 'retry-status') return pool.report(backend, verdictOf({ status: r.status }, statuses));
  if (client?.ttfbMs !== undefined) backend.recordTtfb(client.ttfbMs);
  pool.report(backend, verdictOf({ status: ex.attempts.at(-1)?.status }, statuses));
}

function fail(ctx: ProxyContext, plan: ForwardPlan, err: ProxyError, responseStarted: boolean): void {
  const now = ctx.now();
  ctx.stats.errorsByType[err.type] = (ctx.stats.errorsByType[err.type] ?? 0) + 1;
  plan.flight?.settle({ kind: 'error', error: err });
  const client = plan.client;
  if (!client) {
    ctx.log.backgroundFailure(plan.source, err);
    return;
  }
  client.error = err;
  if (responseStarted || client.clientGone || client.res.headersSent) return;
  if (client.bodyTooLarge) {
    client.served = 'refused';
    return deliverSimple(ctx, client, 413, 'Request body too large');
  }
  if (client.bodyMalformed) {
    // The client's own bytes failed (issue 11 fuzz): a 400 of ours, not a 503 blaming the origin.
    client.served = 'refused';
    return deliverSimple(ctx, client, 400, 'Malformed request body');
  }
  if (usableOnError(plan.stale, now)) {
    client.proxyStatus = proxyStatusForError(ctx.name, err);
    return deliverStale(ctx, client, plan.stale, now, `stale-if-error; error=${err.type}`);
  }
  ctx.stats.synthErrors++;
  synthError(ctx, client, err);
}

function attempt(ctx: ProxyContext, plan: ForwardPlan, backend: Backend, retry: string | undefined, opts: AttemptOptions): Promise<AttemptResult> {
  return new Promise<AttemptResult>((resolve) => {
    const ex = plan.source;
    const client = plan.client;
    const primary = plan.primary;
    const cacheable = primary !== undefined;
    const requestTimeMs = ctx.now();
    // Invalidations (§4.4) after this point forbid storing what this fetch brings back (MemoryStore.put).
    const epoch = ctx.store.epoch();
    const reqHeaders = ex.req.headers as Headers;
    const revalidate = cacheable && plan.stale && (plan.stale.etag || plan.stale.lastModified) ? { etag: plan.stale.etag, lastModified: plan.stale.lastModified } : undefined;
    /** pending: nothing sent yet; stream: origin response going out; none: the client has its answer or left. */
    let clientMode: 'pending' | 'stream' | 'none' = client && !client.clientGone ? 'pending' : 'none';
    let storeMode: 'store' | 'transient' | 'none' = 'none';
    let collector: BodyCollector | undefined;
    let decision: Extract<StoreDecision, { store: true }> | undefined;
    let status: number | undefined;
    let resHeaders: Headers = {};
    let statusMessage = '';
    let responseTimeMs = 0;
    let control: FetchControl | undefined;
    let paused = false;
    let finished = false;

    const finish = (r: AttemptResult) => {
      if (finished) return;
      finished = true;
      unsubscribe?.();
      const ms = Math.round(performance.now() - handle.startedAt);
      ex.attempts.push(
        r.kind !== 'failed'
          ? { backend: backend.name, outcome: 'ok', status, ms, ...(retry ? { retry } : {}) }
          : { backend: backend.name, outcome: r.error.type, ms, reused: r.error.reused, ...(retry ? { retry } : {}) },
      );
      if (client) {
        client.backend = backend.name;
        client.ttfbMs = handle.ttfbMs();
      }
      resolve(r);
    };

    const stopStoring = (reason: NotStorableReason) => {
      if (storeMode === 'store') {
        if (MARKABLE.has(reason)) ctx.passMarks.set(primary!, true);
        if (plan.stale) ctx.store.delete(plan.stale.key); // superseded by an answer too large to store
        plan.flight?.settle({ kind: 'uncacheable' });
      } else if (storeMode === 'transient') plan.flight?.settle({ kind: 'uncacheable' });
      storeMode = 'none';
      collector = undefined;
    };

    const handle = fetchOnce(
      backend,
      {
        method: cacheable ? 'GET' : ex.method,
        path: ex.target,
        headers: originRequestHeaders(ex.req, {
          requestId: ex.id,
          via: ctx.via,
          trustForwarded: ctx.config.proxy.trust_forwarded,
          hostHeader: backend.hostHeader,
          cacheFetch: cacheable,
          revalidate,
          ...traceHeaders(ex),
        }),
        body: plan.body,
        responseHeaderSize: ctx.config.limits.response_header_size,
      },
      {
        onInterim(st, h, msg) {
          // 103 Early Hints and other 1xx go to a waiting HTTP/1.1 client (interim.ts); they are never stored.
          if (client && clientMode === 'pending') forwardInterim(client, st, h, msg, ctx.via);
        },
        onHeaders(st, h, msg, ctl) {
          control = ctl;
          status = st;
          if (st >= 500 && opts.retryStatus(st)) {
            // retries.on_status: this answer is dropped unseen and the request tried on another backend.
            handle.abort();
            finish({ kind: 'retry-status', status: st });
            return;
          }
          resHeaders = h;
          statusMessage = msg;
          responseTimeMs = ctx.now();
          if (cacheable) {
            if (st === 304) {
              // Client validators are never forwarded on a cache fetch, so a 304 answers ours (§4.3.3).
              const f = revalidate && plan.stale ? freshenObject(ctx, plan.stale, reqHeaders, h, requestTimeMs, responseTimeMs, plan.route?.policy) : ({ kind: 'mismatch' } as const);
              if (f.kind === 'mismatch') {
                // A 304 for a validator we did not send: the stored body is not known to be current, and
                // the 304 has none to give the client. Drop the copy; report the origin's answer as invalid.
                if (plan.stale) ctx.store.delete(plan.stale.key);
                handle.abort();
                finish({ kind: 'failed', error: new ProxyError({ type: 'http_protocol_error', phase: 'wait_headers', backend: backend.name, headersReceived: true, code: 'unexpected_304', context: { sent: revalidate ?? null, etag: h['etag'] ?? null } }), responseStarted: false });
                return;
              }
              const stored = f.kind === 'fresh' && ctx.store.put(f.object, responseTimeMs, epoch);
              if (f.kind === 'fresh') plan.flight?.settle({ kind: 'object', object: f.object, stored });
              else {
                // §4.3.4: the 304 now forbids storing: the validated body answers this request only.
                ctx.store.delete(plan.stale!.key);
                if (MARKABLE.has(f.reason)) ctx.passMarks.set(primary, true);
                plan.flight?.settle({ kind: 'uncacheable' });
              }
              if (client && clientMode === 'pending') {
                client.served = 'origin';
                client.cache = {
                  hit: false,
                  fwd: plan.fwd,
                  fwdStatus: 304,
                  ttl: stored ? ttlSeconds(f.object, responseTimeMs) : undefined,
                  stored,
                  collapsed: client.cache.collapsed,
                  detail: f.kind === 'not-storable' ? `not-stored=${f.reason}` : undefined,
                };
                deliverObject(ctx, client, f.object, responseTimeMs);
              }
              clientMode = 'none';
              return;
            }
            if (isErrorStatus(st) && client && clientMode === 'pending' && usableOnError(plan.stale, responseTimeMs)) {
              // Never let an origin error replace a good object: the stale copy answers instead.
              client.proxyStatus = proxyStatusForReceived(ctx.name, st, backend.name);
              deliverStale(ctx, client, plan.stale, responseTimeMs, `stale-if-error; received-status=${st}`, st);
              clientMode = 'none';
            }
            const d = storageDecision(ctx, reqHeaders, st, h, requestTimeMs, responseTimeMs, plan.route?.policy);
            if (d.store) {
              decision = d;
              storeMode = 'store';
              collector = new BodyCollector(ctx.maxObjectBytes);
              ctx.passMarks.delete(primary);
            } else if (st >= 500 && plan.flight) {
              // Waiters get the same origin error instead of each sending their own request.
              decision = TRANSIENT;
              storeMode = 'transient';
              collector = new BodyCollector(TRANSIENT_MAX_BYTES);
            } else {
              if (MARKABLE.has(d.reason)) {
                ctx.passMarks.set(primary, true);
                // The origin's current answer may not be stored: the older copy must not keep being
                // served (stale-while-revalidate or stale-if-error would hand it out for their whole window).
                if (plan.stale) ctx.store.delete(plan.stale.key);
              }
              plan.flight?.settle({ kind: 'uncacheable' });
            }
            if (client && clientMode === 'pending') {
              client.cache = {
                hit: false,
                fwd: plan.fwd,
                fwdStatus: st,
                stored: storeMode === 'store',
                collapsed: client.cache.collapsed,
                detail: d.store ? undefined : `not-stored=${d.reason}`,
              };
            }
          } else if (client) {
            client.cache = { hit: false, fwd: plan.fwd, fwdStatus: st };
            client.originHeaders = h;
          }
          if (client && clientMode === 'pending') {
            if (st >= 500) client.proxyStatus = proxyStatusForReceived(ctx.name, st, backend.name);
            client.served = 'origin';
            startOriginResponse(ctx, client, st, msg, responseHeaderList(h, ctx.via));
            clientMode = 'stream';
          }
          if (clientMode !== 'stream' && storeMode === 'none') {
            // Nobody needs the body: stop the transfer.
            handle.abort();
            finish({ kind: 'done' });
          }
        },
        onData(chunk) {
          if (collector && !collector.add(chunk)) {
            stopStoring('too-large');
            if (client) client.cache.stored = false;
            if (clientMode !== 'stream') {
              handle.abort();
              finish({ kind: 'done' });
              return;
            }
          }
          if (clientMode === 'stream') client!.bytesOut += chunk.length;
          if (clientMode === 'stream' && !client!.sink.write(chunk) && !paused) {
            paused = true;
            control?.pause();
            client!.sink.once('drain', () => {
              paused = false;
              control?.resume();
            });
          }
        },
        onEnd() {
          if (collector && decision && storeMode !== 'none') {
            const object = buildObject(ctx, { primary: primary!, reqHeaders, status: status!, statusMessage, headers: resHeaders, body: collector.body(), decision, requestTimeMs, responseTimeMs });
            const stored = storeMode === 'store' && ctx.store.put(object, ctx.now(), epoch);
            plan.flight?.settle({ kind: 'object', object, stored });
          }
          if (clientMode === 'stream') client!.sink.end();
          finish({ kind: 'done' });
        },
        onError(err) {
          storeMode = 'none';
          if (clientMode === 'stream') {
            // Mid-body failure: abort the client connection so it cannot mistake a truncated body for a whole one.
            client!.res.destroy(err);
            finish({ kind: 'failed', error: err, responseStarted: true });
            return;
          }
          finish({ kind: 'failed', error: err, responseStarted: status !== undefined && (client?.res.headersSent ?? false) });
        },
      },
      { fresh: opts.fresh, timeouts: opts.timeouts },
    );

    const unsubscribe = client?.onGone(() => {
      const wasPaused = clientMode === 'stream' && paused;
      // 'none' before resuming: resume() can deliver buffered chunks at once, and onData must not write them
      // to the gone client (whose refused write paused the fetch again for good, issue 11 item 6).
      clientMode = 'none';
      if (wasPaused) {
        paused = false;
        control?.resume();
      }
      // Keep fetching when the body is being stored or other requests wait for it.
      const needed = storeMode !== 'none' || (plan.flight !== undefined && plan.flight.waiters > 0) || (status === undefined && cacheable);
      if (!needed) {
        handle.abort();
        finish({ kind: 'done' });
      }
    });
  });
}

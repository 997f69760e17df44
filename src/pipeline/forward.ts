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
import { originRequestHeaders, responseHeaderList } from './headers.ts';
import { decideRetry } from './retry.ts';
import { deliverStale, usableOnError } from './stale.ts';
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
  /** Request body stream, or null when there is none. */
  body: Readable | null;
};

type AttemptResult = { kind: 'done' } | { kind: 'failed'; error: ProxyError; responseStarted: boolean };

/** Not storable because of what the response said (not the request): remembered as hit-for-miss. */
const MARKABLE: ReadonlySet<NotStorableReason> = new Set(['no-store', 'private', 'set-cookie', 'vary-star', 'no-freshness', 'too-large', 'status']);

/** Largest origin error body kept to hand to coalesced waiters. */
const TRANSIENT_MAX_BYTES = 256 * 1024;

const TRANSIENT: Extract<StoreDecision, { store: true }> = {
  store: true,
  freshness: { lifetime: { ms: 0, source: 'none' }, initialAgeMs: 0, swrMs: 0, sieMs: 0, keepMs: 0, noStaleServe: true, alwaysRevalidate: true },
};

export async function forward(ctx: ProxyContext, plan: ForwardPlan): Promise<void> {
  const ex = plan.source;
  if (plan.client) plan.client.cache = { hit: false, fwd: plan.fwd, collapsed: plan.client.cache.collapsed };
  const tried = new Set<Backend>();
  let attempts = 0;
  let staleKeepaliveRetried = false;
  let retry: string | undefined;
  let last: Backend | undefined;
  for (;;) {
    const backend = retry === 'stale-keepalive' && last ? last : plan.pool.choose(tried);
    if (!backend) {
      const health = plan.pool.healthSummary();
      return fail(ctx, plan, new ProxyError({ type: 'destination_unavailable', phase: 'choose', source: 'internal', context: { pool: plan.pool.name, healthy: `${health.healthy}/${health.total}` } }), false);
    }
    tried.add(backend);
    last = backend;
    attempts++;
    ctx.stats.originFetches++;
    const r = await attempt(ctx, plan, backend, retry);
    if (r.kind === 'done') return;
    const reason = decideRetry({
      error: r.error,
      method: plan.primary !== undefined ? 'GET' : ex.method,
      replayable: plan.body === null,
      responseStarted: r.responseStarted,
      attempts,
      maxRetries: Math.min(2, plan.pool.backends.length),
      otherBackend: plan.pool.backends.some((b) => !tried.has(b)),
      staleKeepaliveRetried,
    });
    if (!reason || plan.client?.clientGone) return fail(ctx, plan, r.error, r.responseStarted);
    if (reason === 'stale-keepalive') staleKeepaliveRetried = true;
    retry = reason;
  }
}

function fail(ctx: ProxyContext, plan: ForwardPlan, err: ProxyError, responseStarted: boolean): void {
  const now = Date.now();
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
  if (usableOnError(plan.stale, now)) {
    client.proxyStatus = proxyStatusForError(ctx.name, err);
    return deliverStale(ctx, client, plan.stale, now, `stale-if-error; error=${err.type}`);
  }
  ctx.stats.synthErrors++;
  synthError(ctx, client, err);
}

function attempt(ctx: ProxyContext, plan: ForwardPlan, backend: Backend, retry: string | undefined): Promise<AttemptResult> {
  return new Promise<AttemptResult>((resolve) => {
    const ex = plan.source;
    const client = plan.client;
    const primary = plan.primary;
    const cacheable = primary !== undefined;
    const requestTimeMs = Date.now();
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
        r.kind === 'done'
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
        }),
        body: plan.body,
      },
      {
        onHeaders(st, h, msg, ctl) {
          control = ctl;
          status = st;
          resHeaders = h;
          statusMessage = msg;
          responseTimeMs = Date.now();
          if (cacheable) {
            if (st === 304 && revalidate && plan.stale) {
              const fresh = freshenObject(ctx, plan.stale, reqHeaders, h, requestTimeMs, responseTimeMs);
              if (fresh) {
                const stored = ctx.store.put(fresh, responseTimeMs);
                plan.flight?.settle({ kind: 'object', object: fresh, stored });
                if (client && clientMode === 'pending') {
                  client.served = 'origin';
                  client.cache = { hit: false, fwd: plan.fwd, fwdStatus: 304, ttl: ttlSeconds(fresh, responseTimeMs), stored, collapsed: client.cache.collapsed };
                  deliverObject(ctx, client, fresh, responseTimeMs);
                }
                clientMode = 'none';
                return;
              }
            }
            if (st >= 500 && client && clientMode === 'pending' && usableOnError(plan.stale, responseTimeMs)) {
              // Never let an origin error replace a good object: the stale copy answers instead.
              client.proxyStatus = proxyStatusForReceived(ctx.name, st, backend.name);
              deliverStale(ctx, client, plan.stale, responseTimeMs, `stale-if-error; received-status=${st}`, st);
              clientMode = 'none';
            }
            const d = storageDecision(ctx, reqHeaders, st, h, requestTimeMs, responseTimeMs);
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
              if (MARKABLE.has(d.reason)) ctx.passMarks.set(primary, true);
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
          if (clientMode === 'stream' && !client!.res.write(chunk) && !paused) {
            paused = true;
            control?.pause();
            client!.res.once('drain', () => {
              paused = false;
              control?.resume();
            });
          }
        },
        onEnd() {
          if (collector && decision && storeMode !== 'none') {
            const object = buildObject(ctx, { primary: primary!, reqHeaders, status: status!, statusMessage, headers: resHeaders, body: collector.body(), decision, requestTimeMs, responseTimeMs });
            const stored = storeMode === 'store' && ctx.store.put(object, Date.now());
            plan.flight?.settle({ kind: 'object', object, stored });
          }
          if (clientMode === 'stream') client!.res.end();
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
    );

    const unsubscribe = client?.onGone(() => {
      if (clientMode === 'stream' && paused) {
        paused = false;
        control?.resume();
      }
      clientMode = 'none';
      // Keep fetching when the body is being stored or other requests wait for it.
      const needed = storeMode !== 'none' || (plan.flight !== undefined && plan.flight.waiters > 0) || (status === undefined && cacheable);
      if (!needed) {
        handle.abort();
        finish({ kind: 'done' });
      }
    });
  });
}

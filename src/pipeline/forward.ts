// Forward: choose a backend, fetch, retry if the single retry decision allows, then stream the answer
// to the client while copying it into the store — or, on failure, serve stale or the explained error.
import type { Readable } from 'node:stream';
import type { CachedObject } from '../cache/object.ts';
import type { Headers } from '../cache/storable.ts';
import { ProxyError } from '../errors.ts';
import type { Exchange, FwdReason } from '../server/exchange.ts';
import type { Backend } from '../upstream/backend.ts';
import type { BackendPool } from '../upstream/pool.ts';
import type { Flight } from './coalesce.ts';
import type { ProxyContext } from './context.ts';
import { attempt, type AttemptResult } from './attempt.ts';
import { deliverSimple } from './deliver.ts';
import { admit, takeSlot, unavailable } from './choose.ts';
import { bufferBody } from './replay.ts';
import { isIdempotent } from './methods.ts';
import { decideRetry, type NoRetry, type RetryDecision, type RetryReason } from './retry.ts';
import type { Route } from './route.ts';
import { verdictOf } from '../upstream/health/outlier.ts';
import { deliverStale, usableOnError } from './stale.ts';
import { proxyStatusForError, synthError } from './synth.ts';

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

export async function forward(ctx: ProxyContext, plan: ForwardPlan): Promise<void> {
  if (plan.client) plan.client.cache = { hit: false, fwd: plan.fwd, collapsed: plan.client.cache.collapsed };
  const admission = await admit(plan.pool, plan.client, plan.client !== null && usableOnError(plan.stale, ctx.now()));
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
  const allowPanic = !usableOnError(plan.stale, ctx.now());
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
    // A request with a stale copy it may serve does not queue for a busy backend (issue 9 item 4).
    const slot = await takeSlot(pool, backend, plan.client, plan.client !== null && usableOnError(plan.stale, ctx.now()));
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

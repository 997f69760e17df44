// The access log: one JSON line per request (pino, asynchronous so logging never blocks the hot path),
// carrying for every failure the full report of ../shared/FAILURES.md. Also keeps the most recent
// failure reports in memory for the admin plane.
import pino, { type Logger } from 'pino';
import { writeSync } from 'node:fs';
import type { Writable } from 'node:stream';
import type { ProxyError } from '../errors.ts';
import type { Exchange } from '../server/exchange.ts';
import { cacheStatusValue } from '../pipeline/deliver.ts';

export type HealthContext = {
  pool: string;
  state: string;
  healthy: string;
  inflight: number;
  max: number | null;
  /** Requests waiting for a connection slot on the backend. */
  queued?: number;
  /** Passive health as a circuit: `closed`, `open until <time>`, `half-open`. */
  circuit?: string;
  /** Recent probe results, oldest first (`H` passed, `-` failed). */
  probes?: string;
  /** The pool is in panic mode. */
  panic?: boolean;
  /** Passive health wanted the backend out and the pool kept it (`last-capacity`, `max-ejection-percent`). */
  ejection_refused?: string;
};

/** The failure report: the same facts in the log line, the admin API and (when exposed) the error page. */
export type FailureReport = {
  id: string;
  /** W3C traceparent of the request (trace-id, Lacquer's span id towards the origin). */
  trace?: string;
  time: string;
  method: string;
  host: string;
  url: string;
  class: string;
  phase: string;
  source: string;
  code: string;
  details?: string;
  message: string;
  backend?: string;
  address?: string;
  reused?: boolean;
  timings: { ttfb_ms?: number; total_ms: number };
  attempts: Exchange['attempts'];
  /** Why the failed attempt was not retried (budget, max, deadline, not-idempotent, no-other-backend, ...). */
  retry_refused?: string;
  bytes_received?: number;
  headers_received: boolean;
  health?: HealthContext;
  served: string;
  stale_ms?: number;
  hint: string;
  context?: Record<string, unknown>;
};

export type AccessLogOptions = {
  /** `stdout`, `stderr`, `off`, a file path, or a stream (tests). */
  destination: string | Writable;
  level: string;
  proxyName: string;
  /** How many recent failure reports to keep in memory. */
  recentFailures?: number;
  healthOf?: (backend: string | undefined) => HealthContext | undefined;
};

const round = (ms: number | undefined) => (ms === undefined ? undefined : Math.round(ms * 10) / 10);

/** nginx's 499: the client closed the connection before any response was sent (statusCode is still the default 200). */
const statusOf = (ex: Exchange) => (!ex.res.headersSent && ex.clientGone ? 499 : ex.res.statusCode);

const q = JSON.stringify;

/** The access line's JSON (field order as it always was; undefined fields left out). */
function accessLine(ex: Exchange, name: string, report: FailureReport | undefined): string {
  let l = `{"level":"info","time":"${isoNow()}","type":"access","id":${q(ex.id)},"method":${q(ex.method)},"host":${q(ex.host)},"url":${q(ex.target)},"status":${statusOf(ex)},"cache":${q(cacheStatusValue(name, ex.cache))},"served":"${ex.served}","bytes":${ex.bytesOut},"ms":${round(ex.elapsedMs())}`;
  if (ex.backend !== undefined) l += `,"backend":${q(ex.backend)}`;
  if (ex.ttfbMs !== undefined) l += `,"ttfb_ms":${round(ex.ttfbMs)}`;
  if (ex.attempts.length) {
    l += `,"attempts":${q(ex.attempts)}`;
    const retry = ex.attempts.find((a) => a.retry)?.retry;
    if (retry !== undefined) l += `,"retry":${q(retry)}`;
  }
  if (ex.retryRefused !== undefined) l += `,"retry_refused":${q(ex.retryRefused)}`;
  if (ex.staleMs !== undefined) l += `,"stale_ms":${q(ex.staleMs)}`;
  if (ex.clientGone) l += ',"client_gone":true';
  if (ex.traceparent !== undefined) l += `,"trace":${q(ex.traceparent)}`;
  if (report) l += `,"error":${q(report)}`;
  return `${l}}`;
}

/** A batch of access lines is written this long after its first line, or sooner past BATCH_MAX_CHARS:
 *  each write is a trip through libuv's thread pool, too dear to make once per event-loop turn. */
const BATCH_MS = 10;
const BATCH_MAX_CHARS = 32 * 1024;

/** pino's isoTime, computed once per millisecond: tens of access lines share each one under load. */
let isoMs = 0;
let isoText = '';
function isoNow(): string {
  const now = Date.now();
  if (now !== isoMs) {
    isoMs = now;
    isoText = new Date(now).toISOString();
  }
  return isoText;
}

export class AccessLog {
  readonly logger: Logger;
  readonly #access: Logger | undefined;
  readonly #name: string;
  readonly #recent: FailureReport[] = [];
  readonly #max: number;
  /** Health context for failure reports; set by whoever owns the backends. */
  healthOf: AccessLogOptions['healthOf'];
  readonly #dest: ReturnType<typeof pino.destination> | undefined;
  /** The logger's stream: access lines are written to it directly (see request()). */
  readonly #out: { write(line: string): unknown };
  /**
   * Access lines of the last few milliseconds, written to the file destination in one piece. sonic-boom
   * measures its whole pending buffer on every write (Buffer.byteLength flattens it), so writing line
   * by line copied each buffered line dozens of times and, under load, filled the old generation with
   * garbage (BENCHMARKS.md). pino's own lines take the batch along first, so the order of lines holds.
   */
  #batch = '';
  #batchTimer: NodeJS.Timeout | undefined;
  readonly #writeBatch = (): void => {
    clearTimeout(this.#batchTimer);
    this.#batchTimer = undefined;
    const b = this.#batch;
    this.#batch = '';
    if (b) this.#out.write(b);
  };

  constructor(o: AccessLogOptions) {
    this.#name = o.proxyName;
    this.#max = o.recentFailures ?? 200;
    this.healthOf = o.healthOf;
    let stream: Writable | ReturnType<typeof pino.destination>;
    if (typeof o.destination === 'string') {
      const d = o.destination;
      this.#dest = pino.destination({ dest: d === 'stdout' || d === 'off' ? 1 : d === 'stderr' ? 2 : d, sync: false, mkdir: true });
      stream = this.#dest;
    } else stream = o.destination;
    this.#out = stream;
    const opts = {
      base: null,
      level: o.level,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label: string) => ({ level: label }) },
      hooks: {
        streamWrite: (line: string) => {
          if (!this.#batch) return line;
          const b = this.#batch;
          this.#batch = '';
          return b + line;
        },
      },
    };
    this.logger = pino(opts, stream);
    this.#access = o.destination === 'off' ? undefined : this.logger.child({ type: 'access' }, { level: 'info' });
  }

  /** Called once per request when its response is finished or aborted. */
  request(ex: Exchange): void {
    const report = ex.error ? this.report(ex, ex.error) : undefined;
    if (report) this.#remember(report);
    if (!this.#access) return;
    // The hottest line of the proxy, written once per request, built by hand: the field names are constant,
    // so only the values go through JSON.stringify. 2.3 µs of a 17.7 µs cache hit went to this line when it
    // was one JSON.stringify of a literal object (bench/hit-costs.ts, BENCHMARKS.md "Cost of each feature").
    // The line is the one the pino child would write — level, time, bindings, then the fields, undefined
    // ones left out.
    let json: string;
    try {
      json = accessLine(ex, this.#name, report);
    } catch {
      // A value JSON cannot write (a cycle or a BigInt in an error's context): pino's safe serialiser can.
      this.#access.info({
        id: ex.id,
        method: ex.method,
        host: ex.host,
        url: ex.target,
        status: statusOf(ex),
        cache: cacheStatusValue(this.#name, ex.cache),
        served: ex.served,
        bytes: ex.bytesOut,
        ms: round(ex.elapsedMs()),
        backend: ex.backend,
        ttfb_ms: round(ex.ttfbMs),
        attempts: ex.attempts.length ? ex.attempts : undefined,
        retry: ex.attempts.find((a) => a.retry)?.retry,
        retry_refused: ex.retryRefused,
        stale_ms: ex.staleMs,
        client_gone: ex.clientGone || undefined,
        trace: ex.traceparent,
        error: report,
      });
      return;
    }
    if (!this.#dest) {
      this.#out.write(`${json}\n`);
      return;
    }
    this.#batch += `${json}\n`;
    if (this.#batch.length > BATCH_MAX_CHARS) this.#writeBatch();
    else this.#batchTimer ??= setTimeout(this.#writeBatch, BATCH_MS);
  }

  backgroundFailure(ex: Exchange, err: ProxyError): void {
    const report = this.report(ex, err);
    report.served = 'background-refresh';
    this.#remember(report);
    this.logger.warn({ type: 'background', error: report }, `background refresh of ${ex.target} failed: ${err.type}`);
  }

  report(ex: Exchange, err: ProxyError): FailureReport {
    const healthOf = this.healthOf;
    return {
      id: ex.id,
      trace: ex.traceparent,
      time: new Date(ex.startedAt).toISOString(),
      method: ex.method,
      host: ex.host,
      url: ex.target,
      class: err.type,
      phase: err.phase,
      source: err.source,
      code: err.code,
      details: err.details || undefined,
      message: err.message,
      backend: err.backend,
      address: err.address,
      reused: err.reused,
      timings: { ttfb_ms: round(ex.ttfbMs), total_ms: round(ex.elapsedMs())! },
      attempts: ex.attempts,
      retry_refused: ex.retryRefused,
      bytes_received: err.bytesReceived,
      headers_received: err.headersReceived,
      health: healthOf?.(err.backend),
      served: ex.served === 'stale' ? 'stale' : ex.served === 'synth' ? 'synthetic-error' : ex.served,
      stale_ms: ex.staleMs,
      hint: err.hint,
      context: err.context,
    };
  }

  #remember(r: FailureReport): void {
    this.#recent.push(r);
    if (this.#recent.length > this.#max) this.#recent.shift();
  }

  /** Newest first. */
  recentFailures(): readonly FailureReport[] {
    return [...this.#recent].reverse();
  }

  /** Writes everything pending synchronously (at exit). */
  flush(): void {
    const d = this.#dest;
    if (!d) return this.#writeBatch();
    clearTimeout(this.#batchTimer);
    this.#batchTimer = undefined;
    const batch = this.#batch;
    this.#batch = '';
    try {
      d.flushSync();
      // Not through d.write(): that would start an asynchronous write, which an exit right after drops.
      if (batch) writeSync((d as unknown as { fd: number }).fd, batch); // sonic-boom's fd, public but untyped
    } catch {
      // Not open yet: sonic-boom keeps the lines until it is.
      if (batch) d.write(batch);
    }
  }
}

// The access log: one JSON line per request (pino, asynchronous so logging never blocks the hot path),
// carrying for every failure the full report of docs/FAILURES.md. Also keeps the most recent
// failure reports in memory for the admin plane.
import pino, { type Logger } from 'pino';
import type { Writable } from 'node:stream';
import type { ProxyError } from '../errors.ts';
import type { Exchange } from '../server/exchange.ts';
import { cacheStatusOf, cacheStatusValue } from '../pipeline/deliver.ts';
import { openSink, streamSink, type LogSink } from './log-sink.ts';

export type HealthContext = {
  pool: string;
  state: string;
  healthy: string;
  inflight: number;
  max: number | null;
  /** The backend's learned concurrency limit, when adaptive. */
  limit?: number;
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

/**
 * A JSON string: JSON.stringify's output, without calling it for the usual value that needs no escape —
 * ids, methods, hosts, paths, addresses (issue 12: eight JSON.stringify calls were half of the line's cost).
 * Anything it would escape, or might (a quote, a backslash, a control character, a surrogate), goes to it.
 */
function q(v: unknown): string {
  if (typeof v === 'number') return Number.isFinite(v) ? String(v) : 'null';
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v !== 'string') return JSON.stringify(v);
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c < 0x20 || c === 0x22 || c === 0x5c || c >= 0xd800) return JSON.stringify(v);
  }
  return `"${v}"`;
}

/** JSON.stringify of the attempts (flat records of strings, numbers and booleans), key for key, without its generic walk. */
function attemptsJson(list: Exchange['attempts']): string {
  let s = '[';
  for (let i = 0; i < list.length; i++) {
    const a = list[i] as Record<string, unknown>;
    let o = '';
    for (const k in a) {
      const v = a[k];
      if (v === undefined) continue;
      o += `${o ? ',' : ''}"${k}":${q(v)}`;
    }
    s += `${i ? ',' : ''}{${o}}`;
  }
  return `${s}]`;
}

/** The access line's JSON (field order as it always was; undefined fields left out). */
function accessLine(ex: Exchange, name: string, report: FailureReport | undefined): string {
  let l = `{"level":"info","time":"${isoNow()}","type":"access","id":${q(ex.id)},"method":${q(ex.method)},"host":${q(ex.host)},"url":${q(ex.target)}`;
  // The client as seen by this listener (after a PROXY protocol header), and how it spoke.
  if (ex.client !== undefined) l += `,"client":${q(ex.client)}`;
  if (ex.protocol !== undefined) l += `,"protocol":${q(ex.protocol)}`;
  l += `,"status":${statusOf(ex)},"cache":${q(cacheStatusOf(name, ex))},"served":"${ex.served}","bytes":${ex.bytesOut},"ms":${round(ex.elapsedMs())}`;
  if (ex.backend !== undefined) l += `,"backend":${q(ex.backend)}`;
  if (ex.ttfbMs !== undefined) l += `,"ttfb_ms":${round(ex.ttfbMs)}`;
  if (ex.attempts.length) {
    l += `,"attempts":${attemptsJson(ex.attempts)}`;
    const retry = ex.attempts.find((a) => a.retry)?.retry;
    if (retry !== undefined) l += `,"retry":${q(retry)}`;
  }
  if (ex.retryRefused !== undefined) l += `,"retry_refused":${q(ex.retryRefused)}`;
  if (ex.staleMs !== undefined) l += `,"stale_ms":${q(ex.staleMs)}`;
  if (ex.clientGone) l += ',"client_gone":true';
  if (ex.clientTimeout !== undefined) l += `,"client_timeout":${q(ex.clientTimeout)}`;
  if (ex.traceparent !== undefined) l += `,"trace":${q(ex.traceparent)}`;
  if (report) l += `,"error":${q(report)}`;
  return `${l}}`;
}

/** A batch of access lines is written this long after its first line, or sooner past BATCH_MAX_BYTES:
 *  each write is a trip through libuv's thread pool, too dear to make once per event-loop turn. */
const BATCH_MS = 10;
const BATCH_MAX_BYTES = 32 * 1024;
/** A batch's buffer: room for BATCH_MAX_BYTES and the line that goes past it. */
const BATCH_BUFFER_BYTES = 64 * 1024;

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
  /** Operational messages (start, stop, reload, health changes, failures of background work). */
  readonly logger: Logger;
  readonly #access: Logger | undefined;
  /** Lines that belong with the access lines but are not one (background refresh failures). */
  readonly #accessLogger: Logger | undefined;
  readonly #name: string;
  readonly #recent: FailureReport[] = [];
  readonly #max: number;
  /** Health context for failure reports; set by whoever owns the backends. */
  healthOf: AccessLogOptions['healthOf'];
  /** Where access lines go; undefined for `off`. */
  readonly #accessSink: LogSink | undefined;
  /** Where operational messages go: stderr whatever `log.access` says (issue 11 item 13), or the test's stream. */
  readonly #opsSink: LogSink;
  /** Access lines are batched for fd destinations; a test's stream gets each line at once. */
  readonly #batched: boolean;
  /**
   * Access lines of the last few milliseconds, written in one piece. sonic-boom measures its whole pending
   * buffer on every write (Buffer.byteLength flattens it), so writing line by line copied each buffered
   * line dozens of times and, under load, filled the old generation with garbage (BENCHMARKS.md). An
   * operational line written to the same destination takes the batch along first, so the order of lines holds.
   * Each line is encoded into the batch's buffer as it is made (issue 12): a batch kept as one string was
   * flattened and encoded again, 32 K characters at a time, on the main thread (`writeString` took 4.5 % of
   * a hit's busy time).
   */
  #batch: Buffer | undefined;
  /** Bytes of `#batch` in use. */
  #batchLen = 0;
  #batchTimer: NodeJS.Timeout | undefined;
  readonly #writeBatch = (): void => {
    clearTimeout(this.#batchTimer);
    this.#batchTimer = undefined;
    const b = this.#takeBatch();
    if (b) this.#accessSink?.write(b);
  };

  constructor(o: AccessLogOptions) {
    this.#name = o.proxyName;
    this.#max = o.recentFailures ?? 200;
    this.healthOf = o.healthOf;
    const d = o.destination;
    if (typeof d === 'string') {
      this.#opsSink = openSink('stderr');
      this.#accessSink = d === 'off' ? undefined : d === 'stderr' ? this.#opsSink : openSink(d);
      this.#batched = true;
    } else {
      this.#opsSink = this.#accessSink = streamSink(d, { bound: false });
      this.#batched = false;
    }
    // A file keeps the whole story: operational lines go there too, in order with the access lines.
    const copyOps = typeof d === 'string' && d !== 'off' && d !== 'stdout' && d !== 'stderr';
    const opsStream = {
      write: (line: string) => {
        if (this.#accessSink === this.#opsSink) return this.#afterBatch(this.#opsSink, line);
        if (copyOps) this.#afterBatch(this.#accessSink!, line);
        this.#opsSink.write(line);
      },
    };
    const opts = {
      base: null,
      level: o.level,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label: string) => ({ level: label }) },
    };
    this.logger = pino(opts, opsStream);
    const sink = this.#accessSink;
    this.#accessLogger = sink === undefined ? undefined : pino(opts, { write: (line: string) => this.#afterBatch(sink, line) });
    this.#access = this.#accessLogger?.child({ type: 'access' }, { level: 'info' });
  }

  #takeBatch(): Buffer | undefined {
    const b = this.#batch;
    if (b === undefined || this.#batchLen === 0) return undefined;
    this.#batch = undefined; // handed to the sink, which writes it later: the next line starts a new buffer
    return b.subarray(0, this.#batchLen);
  }

  /** Writes the pending access lines, then `line`: lines reach a destination in the order they were made. */
  #afterBatch(sink: LogSink, line: string): void {
    const b = this.#takeBatch();
    if (b) sink.write(b);
    sink.write(line);
  }

  /** Appends one access line to the batch, encoded now. */
  #append(json: string): void {
    const need = json.length * 3 + 1; // UTF-8 takes at most 3 bytes per UTF-16 unit, and the newline
    let b = this.#batch;
    if (b === undefined || b.length - this.#batchLen < need) {
      if (b !== undefined) this.#writeBatch();
      b = this.#batch = Buffer.allocUnsafeSlow(Math.max(BATCH_BUFFER_BYTES, need));
      this.#batchLen = 0;
    }
    let n = this.#batchLen;
    n += b.write(json, n);
    b[n++] = 0x0a;
    this.#batchLen = n;
  }

  /** Log lines dropped because a destination was too slow or broken (never waited for). */
  droppedLines(): number {
    return (this.#accessSink?.dropped() ?? 0) + (this.#accessSink === this.#opsSink ? 0 : this.#opsSink.dropped());
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
        client: ex.client,
        protocol: ex.protocol,
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
        client_timeout: ex.clientTimeout,
        trace: ex.traceparent,
        error: report,
      });
      return;
    }
    if (!this.#batched) {
      this.#accessSink!.write(`${json}\n`);
      return;
    }
    this.#append(json);
    if (this.#batchLen > BATCH_MAX_BYTES) this.#writeBatch();
    else this.#batchTimer ??= setTimeout(this.#writeBatch, BATCH_MS);
  }

  backgroundFailure(ex: Exchange, err: ProxyError): void {
    const report = this.report(ex, err);
    report.served = 'background-refresh';
    this.#remember(report);
    // A failure report like the access lines', so it goes where they go (and to stderr when they are off).
    (this.#accessLogger ?? this.logger).warn({ type: 'background', error: report }, `background refresh of ${ex.target} failed: ${err.type}`);
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

  /** Writes what is pending where that cannot block (files); pipes keep their queue (see drain). */
  flush(): void {
    clearTimeout(this.#batchTimer);
    this.#batchTimer = undefined;
    this.#accessSink?.flush(this.#takeBatch());
    if (this.#opsSink !== this.#accessSink) this.#opsSink.flush();
  }

  /** After the proxy stopped: flush and close a log file (stdout and stderr stay open for the process's last words). */
  close(): void {
    this.flush();
    this.#accessSink?.close();
    if (this.#opsSink !== this.#accessSink) this.#opsSink.close();
  }

  /** At exit: flush, then give pipes up to `ms` to take what is queued. A stalled reader costs `ms`, never more. */
  async drain(ms: number): Promise<void> {
    this.flush();
    await Promise.all([this.#accessSink?.drain(ms), this.#opsSink.drain(ms)]);
  }
}

// Active health probes, Varnish style (`.url`/`.request`, `.interval`, `.timeout`, `.window`,
// `.threshold`, `.initial`, `.expected_response`): a backend is healthy when at least `threshold` of the
// last `window` probes passed. Probes run on their own connections (a one-request undici Client, or a raw
// socket for `request`), never on the request path and never through the backend's connection slots;
// one probe per backend is in flight at a time — the next is scheduled only when the last one ended.
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { Client } from 'undici';
import type { ProbeConfig } from '../../config/schema.ts';

export type ProbeResult = { ok: boolean; at: number; ms: number; status?: number; error?: string };

/** The sliding window of probe outcomes and the verdict it gives. */
export class ProbeWindow {
  readonly window: number;
  readonly threshold: number;
  /** Outcomes counted for health, oldest first: `initial` assumed passes, then real probes. */
  readonly #bits: boolean[];
  /** Real probes only, oldest first, at most `window` (the history shown to operators). */
  readonly history: ProbeResult[] = [];

  constructor(cfg: Pick<ProbeConfig, 'window' | 'threshold' | 'initial'>) {
    this.window = cfg.window;
    this.threshold = cfg.threshold;
    this.#bits = new Array<boolean>(Math.min(cfg.window, cfg.initial ?? cfg.threshold)).fill(true);
  }

  get passed(): number {
    let n = 0;
    for (const b of this.#bits) if (b) n++;
    return n;
  }

  get healthy(): boolean {
    return this.passed >= this.threshold;
  }

  record(r: ProbeResult): void {
    this.#bits.push(r.ok);
    if (this.#bits.length > this.window) this.#bits.shift();
    this.history.push(r);
    if (this.history.length > this.window) this.history.shift();
  }

  /** Varnish style, oldest first: `H` passed, `-` failed. */
  get pattern(): string {
    return this.history.map((r) => (r.ok ? 'H' : '-')).join('');
  }

  get lastError(): string | undefined {
    for (let i = this.history.length - 1; i >= 0; i--) {
      const r = this.history[i]!;
      if (r.ok) return undefined;
      if (r.error) return r.error;
    }
    return undefined;
  }
}

export type ProbeTarget = { origin: string; hostHeader: string | undefined };

/** Runs one backend's probe loop. */
export class Prober {
  readonly #cfg: ProbeConfig;
  readonly #target: ProbeTarget;
  readonly #onResult: (r: ProbeResult) => void;
  #timer: NodeJS.Timeout | undefined;
  #abort: AbortController | undefined;
  #running = false;
  /** Probes started, for tests and the admin plane. */
  sent = 0;

  constructor(cfg: ProbeConfig, target: ProbeTarget, onResult: (r: ProbeResult) => void) {
    this.#cfg = cfg;
    this.#target = target;
    this.#onResult = onResult;
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    // The first probe goes out at once, so a backend that starts sick (initial < threshold) is judged quickly.
    void this.#tick();
  }

  stop(): void {
    this.#running = false;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#abort?.abort();
  }

  async #tick(): Promise<void> {
    if (!this.#running) return;
    this.#abort = new AbortController();
    this.sent++;
    const r = await probeOnce(this.#cfg, this.#target, this.#abort.signal);
    this.#abort = undefined;
    if (!this.#running) return;
    this.#onResult(r);
    this.#timer = setTimeout(() => void this.#tick(), this.#cfg.interval);
    this.#timer.unref();
  }
}

/** One probe; never throws. */
export async function probeOnce(cfg: ProbeConfig, target: ProbeTarget, stop: AbortSignal): Promise<ProbeResult> {
  const at = Date.now();
  const t0 = performance.now();
  const signal = AbortSignal.any([stop, AbortSignal.timeout(cfg.timeout)]);
  const done = (status: number | undefined, error: string | undefined): ProbeResult => {
    const ms = Math.round(performance.now() - t0);
    if (error !== undefined) return { ok: false, at, ms, error };
    const ok = status === cfg.expected_status;
    return { ok, at, ms, status, ...(ok ? {} : { error: `status ${status} (expected ${cfg.expected_status})` }) };
  };
  try {
    const status = cfg.request ? await rawProbe(cfg.request, target.origin, signal) : await pathProbe(cfg, target, signal);
    return done(status, undefined);
  } catch (err) {
    if (signal.aborted && !stop.aborted) return done(undefined, `timeout ${cfg.timeout}ms`);
    const e = err as { code?: string; message?: string };
    return done(undefined, e.code ?? e.message ?? String(err));
  }
}

async function pathProbe(cfg: ProbeConfig, target: ProbeTarget, signal: AbortSignal): Promise<number> {
  // A fresh connection per probe (Varnish does the same): a probe must see whether the backend accepts
  // connections now, not ride on a socket opened when it still did.
  const client = new Client(target.origin, { connectTimeout: cfg.timeout, headersTimeout: cfg.timeout, bodyTimeout: cfg.timeout, pipelining: 0 });
  try {
    const headers: Record<string, string> = { connection: 'close', 'user-agent': 'lacquer-probe' };
    if (target.hostHeader) headers.host = target.hostHeader;
    const res = await client.request({ path: cfg.path, method: 'GET', headers, signal });
    await res.body.dump({ limit: 64 * 1024 });
    return res.statusCode;
  } finally {
    void client.destroy().catch(() => undefined);
  }
}

const STATUS_LINE = /^HTTP\/1\.[01] (\d{3})/;

/** Varnish `.request`: the lines are sent as they are; only the status line is read. */
function rawProbe(lines: readonly string[], origin: string, signal: AbortSignal): Promise<number> {
  const u = new URL(origin);
  const port = Number(u.port) || (u.protocol === 'https:' ? 443 : 80);
  return new Promise<number>((resolve, reject) => {
    const socket: Socket =
      u.protocol === 'https:' ? tlsConnect({ host: u.hostname, port, servername: u.hostname }) : netConnect({ host: u.hostname, port });
    let head = '';
    let settled = false;
    const finish = (err: Error | undefined, status?: number) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      socket.destroy();
      if (err) reject(err);
      else resolve(status!);
    };
    const onAbort = () => finish(new Error('aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
    socket.once(u.protocol === 'https:' ? 'secureConnect' : 'connect', () => socket.write(`${lines.join('\r\n')}\r\n\r\n`));
    socket.on('data', (chunk: Buffer) => {
      head += chunk.toString('latin1');
      const eol = head.indexOf('\r\n');
      if (eol < 0 && head.length < 1024) return;
      const m = STATUS_LINE.exec(head);
      finish(m ? undefined : Object.assign(new Error('not an HTTP status line'), { code: 'bad_status_line' }), m ? Number(m[1]) : undefined);
    });
    socket.once('error', (e) => finish(e));
    socket.once('end', () => finish(Object.assign(new Error('closed before a status line'), { code: 'closed' })));
  });
}

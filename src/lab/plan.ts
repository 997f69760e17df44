// What the load generator is told to do and what it writes back: shared by the scenario runner (which
// writes a plan file) and src/lab/loadgen.ts (a separate process that reads it). Times are milliseconds
// relative to `startAt`, the wall-clock instant both processes agree is t=0 of the scenario.

/** One stretch of load. `paths` are cycled in order (each worker starts at its own offset). */
export type LoadPhase =
  /** Closed loop: `concurrency` clients, each sends its next request as soon as the previous one ends. */
  | { kind: 'closed'; name: string; fromMs: number; toMs: number; concurrency: number; paths: string[] }
  /** Open loop: requests start at a fixed rate whatever the answers take (in-flight capped by the plan). */
  | { kind: 'rate'; name: string; fromMs: number; toMs: number; rps: number; paths: string[] }
  /** `workers` clients, each starting one request every `intervalMs` (uniform in [min, max]). */
  | { kind: 'paced'; name: string; fromMs: number; toMs: number; workers: number; intervalMs: { min: number; max: number }; paths: string[] }
  /** `count` requests started at the same instant (a thundering herd). */
  | { kind: 'burst'; name: string; atMs: number; count: number; paths: string[] };

export type LoadPlan = {
  /** Base URL of the proxy under test, e.g. http://127.0.0.1:17100. */
  target: string;
  /** Date.now() value of t=0. */
  startAt: number;
  phases: LoadPhase[];
  /** A request taking longer than this (headers + body) is aborted and recorded as `client_timeout`. */
  requestTimeoutMs: number;
  /** Most requests in flight at once for `rate` phases; beyond it a start is skipped and recorded. */
  maxInFlight: number;
  /** File for the JSON lines, or `-` for stdout. */
  out: string;
  /** Seed for the `paced` intervals. */
  seed?: number;
};

/** How the body compared to `x-lab-checksum`: ok, bad (corrupted), none (no body or no checksum to check). */
export type Verdict = 'ok' | 'bad' | 'none';

/** One request as the client saw it (one JSON line). */
export type Sample = {
  /** Start time, ms since startAt. */
  t: number;
  /** Phase name. */
  ph: string;
  /** Path requested. */
  p: string;
  /** HTTP status, or 0 when no complete response arrived (transport error, timeout, truncated body). */
  s: number;
  /** Proxy-Status class: the `error=` type, `received-status` when the origin's own 5xx was relayed, '' when absent. */
  c: string;
  /** Latency from start to the end of the body (or the failure), ms. */
  ms: number;
  v: Verdict;
  /** Transport error code when s = 0 (e.g. UND_ERR_SOCKET, ECONNRESET, client_timeout). */
  e?: string;
};

/** Proxy-Status (RFC 9209) → class; the first member describes the proxy nearest the client. */
export function proxyStatusClass(header: string | string[] | undefined): string {
  const v = Array.isArray(header) ? header[0] : header;
  if (!v) return '';
  const first = v.split(',')[0] ?? '';
  const err = /;\s*error=("?)([A-Za-z0-9_]+)\1/.exec(first);
  if (err) return err[2]!;
  if (/;\s*received-status=/.test(first)) return 'received-status';
  return 'other';
}

/** Status that counts as a client-visible error (anything but a complete 2xx/3xx). */
export function isError(s: Sample): boolean {
  return s.s < 200 || s.s >= 400;
}

/** End of the plan: the last instant a phase may start a request. */
export function planEndMs(plan: Pick<LoadPlan, 'phases'>): number {
  return Math.max(0, ...plan.phases.map((p) => (p.kind === 'burst' ? p.atMs : p.toMs)));
}

// Alert notification delivery: one POST per webhook per notification, retried with exponential backoff on
// failure, logged, and bounded in how much it keeps. Everything runs on timers off the request path:
// a slow or dead receiver can delay a notification, never a client request.
import type { Logger } from 'pino';
import { Agent, request } from 'undici';
import { maskText, maskUrl } from '../config/secrets.ts';

export type Notification = {
  proxy: string;
  rule: string;
  state: 'firing' | 'resolved';
  /** The rule's `when`, as written. */
  condition: string;
  signal: string;
  /** Measured value (ratio 0..1, milliseconds, per second, or a count for yes/no signals). */
  value: number | null;
  threshold: number | null;
  value_text: string;
  threshold_text: string | null;
  /** When the condition started holding (firing), or when the alert fired (resolved). ISO 8601. */
  since: string;
  at: string;
  summary: string;
  /** Most frequent failure classes over the rule's window, each with its latest request id (for /api/failures/{id}) and that request's backend. */
  top_failures: { class: string; count: number; example_request_id: string; backend?: string }[];
};

export type WebhookTarget = { url: string; format: 'json' | 'slack'; headers?: Readonly<Record<string, string>> };

export type DeliveryRecord = {
  rule: string;
  state: Notification['state'];
  url: string;
  attempts: number;
  result: 'pending' | 'delivered' | 'failed';
  lastError?: string;
  at: string;
};

export type DeliveryOptions = { timeoutMs: number; retries: number; backoffMs: number };

/** Longest wait between two retries. */
const MAX_BACKOFF_MS = 5 * 60_000;
/** Deliveries waiting for a retry at once; past it the oldest is dropped (and logged) so memory stays bounded. */
const MAX_PENDING = 200;
const RECENT = 50;

/** Slack incoming-webhook body: a single `text` with the summary and the top failure classes. */
export function slackBody(n: Notification): { text: string } {
  const head = n.state === 'firing' ? `:rotating_light: *[FIRING] ${n.rule}*` : `:white_check_mark: *[RESOLVED] ${n.rule}*`;
  const lines = [`${head} — ${n.summary}`];
  for (const f of n.top_failures) lines.push(`• \`${f.class}\` ×${f.count} (latest: request ${f.example_request_id}${f.backend ? ` on ${f.backend}` : ''})`);
  return { text: lines.join('\n') };
}

type Pending = { n: Notification; target: WebhookTarget; attempt: number; record: DeliveryRecord; timer?: NodeJS.Timeout };

export class WebhookSender {
  readonly #targets: readonly WebhookTarget[];
  readonly #o: DeliveryOptions;
  readonly #log: Logger;
  readonly #agent = new Agent({ connections: 4, keepAliveTimeout: 1000 });
  readonly #pending = new Set<Pending>();
  readonly #recent: DeliveryRecord[] = [];
  readonly #onResult: (r: 'delivered' | 'retried' | 'failed') => void;
  #closed = false;

  constructor(targets: readonly WebhookTarget[], o: DeliveryOptions, log: Logger, onResult: (r: 'delivered' | 'retried' | 'failed') => void = () => undefined) {
    this.#targets = targets;
    this.#o = o;
    this.#log = log;
    this.#onResult = onResult;
  }

  /** Queues a notification to every webhook; returns at once. */
  send(n: Notification): void {
    if (this.#closed) return;
    for (const target of this.#targets) {
      const record: DeliveryRecord = { rule: n.rule, state: n.state, url: maskUrl(target.url), attempts: 0, result: 'pending', at: n.at };
      this.#recent.push(record);
      if (this.#recent.length > RECENT) this.#recent.shift();
      const p: Pending = { n, target, attempt: 0, record };
      this.#pending.add(p);
      this.#trim();
      void this.#attempt(p);
    }
  }

  /** Newest first. */
  recent(): DeliveryRecord[] {
    return [...this.#recent].reverse();
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const p of this.#pending) clearTimeout(p.timer);
    this.#pending.clear();
    await this.#agent.destroy().catch(() => undefined);
  }

  #trim(): void {
    while (this.#pending.size > MAX_PENDING) {
      const oldest = this.#pending.values().next().value!;
      clearTimeout(oldest.timer);
      this.#pending.delete(oldest);
      oldest.record.result = 'failed';
      oldest.record.lastError = 'dropped: too many deliveries waiting';
      this.#log.error({ type: 'alert', rule: oldest.n.rule, url: oldest.record.url }, 'alert delivery dropped: too many deliveries waiting for retry');
    }
  }

  async #attempt(p: Pending): Promise<void> {
    p.attempt++;
    p.record.attempts = p.attempt;
    const body = JSON.stringify(p.target.format === 'slack' ? slackBody(p.n) : p.n);
    let problem: string | undefined;
    try {
      const res = await request(p.target.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'user-agent': `${p.n.proxy}-alerts`, ...p.target.headers },
        body,
        dispatcher: this.#agent,
        signal: AbortSignal.timeout(this.#o.timeoutMs),
      });
      await res.body.dump();
      if (res.statusCode < 200 || res.statusCode >= 300) problem = `HTTP ${res.statusCode}`;
    } catch (err) {
      const e = err as Error & { code?: string };
      problem = e.name === 'TimeoutError' ? `timeout after ${this.#o.timeoutMs}ms` : (e.code ?? maskText(e.message));
    }
    if (this.#closed) return;
    if (problem === undefined) {
      this.#pending.delete(p);
      p.record.result = 'delivered';
      p.record.lastError = undefined;
      this.#onResult('delivered');
      return;
    }
    p.record.lastError = problem;
    if (p.attempt > this.#o.retries) {
      this.#pending.delete(p);
      p.record.result = 'failed';
      this.#onResult('failed');
      this.#log.error({ type: 'alert', rule: p.n.rule, state: p.n.state, url: p.record.url, attempts: p.attempt, error: problem }, `alert delivery to ${p.record.url} failed after ${p.attempt} attempts: ${problem}`);
      return;
    }
    const wait = Math.min(MAX_BACKOFF_MS, this.#o.backoffMs * 2 ** (p.attempt - 1));
    this.#onResult('retried');
    this.#log.warn({ type: 'alert', rule: p.n.rule, state: p.n.state, url: p.record.url, attempt: p.attempt, error: problem, retry_in_ms: wait }, `alert delivery to ${p.record.url} failed (${problem}); retrying in ${wait}ms`);
    p.timer = setTimeout(() => void this.#attempt(p), wait);
    p.timer.unref();
  }
}

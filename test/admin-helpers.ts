// Helpers for the admin-plane tests: calling the admin API, reading Prometheus text, and a local webhook
// receiver that records what it is sent and can be told to fail.
import { createServer, type Server } from 'node:http';
import { request } from 'undici';
import type { Harness } from './helpers.ts';

export type AdminReply = { status: number; headers: Record<string, string | string[] | undefined>; text: string; json: () => unknown };

export async function admin(h: Harness, path: string, o: { method?: string; token?: string; body?: string; headers?: Record<string, string> } = {}): Promise<AdminReply> {
  const base = h.proxy.plane.admin!.url;
  const res = await request(`${base}${path}`, {
    method: (o.method ?? 'GET') as 'GET',
    headers: { ...(o.token ? { authorization: `Bearer ${o.token}` } : {}), ...o.headers },
    body: o.body,
  });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text, json: () => JSON.parse(text) as unknown };
}

/** Prometheus text → `name{labels}` → value (labels in the order prom-client writes them). */
export function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

/** Sum of every sample of `name` whose labels include all of `match`. */
export function sum(m: Map<string, number>, name: string, match: Record<string, string> = {}): number {
  let s = 0;
  for (const [k, v] of m) {
    if (k !== name && !k.startsWith(`${name}{`)) continue;
    if (Object.entries(match).every(([l, val]) => k.includes(`${l}="${val}"`))) s += v;
  }
  return s;
}

export async function scrape(h: Harness, token?: string): Promise<Map<string, number>> {
  const r = await admin(h, '/metrics', { token });
  if (r.status !== 200) throw new Error(`/metrics answered ${r.status}: ${r.text}`);
  return parseMetrics(r.text);
}

/** Polls `cond` every 25 ms until it holds or `ms` pass; returns whether it held. */
export async function until(cond: () => boolean | Promise<boolean>, ms = 3000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await cond()) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return cond();
}

export type Received = { at: number; body: Record<string, unknown>; headers: Record<string, string | string[] | undefined> };

export type Receiver = {
  url: string;
  received: Received[];
  /** Answer the next `n` deliveries with this status (e.g. 500) instead of 204. */
  failNext(n: number, status?: number): void;
  attempts: number;
  close(): Promise<void>;
};

export async function startReceiver(): Promise<Receiver> {
  let failures = 0;
  let failStatus = 500;
  const r: Receiver = {
    url: '',
    received: [],
    attempts: 0,
    failNext(n, status = 500) {
      failures = n;
      failStatus = status;
    },
    close: () =>
      new Promise((res) => {
        (server as Server).close(() => res());
        (server as Server).closeAllConnections();
      }),
  };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      r.attempts++;
      if (failures > 0) {
        failures--;
        res.writeHead(failStatus).end('receiver says no');
        return;
      }
      r.received.push({ at: Date.now(), body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>, headers: req.headers });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', () => res()));
  const addr = server.address();
  r.url = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}/hook`;
  return r;
}

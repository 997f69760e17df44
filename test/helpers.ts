// Test harness: a real Lacquer on 127.0.0.1:0 in front of real fake origins, with the access log
// captured in memory so tests can assert on the failure reports.
import { Writable } from 'node:stream';
import { Agent, request } from 'undici';
import { validateConfig } from '../src/config/load.ts';
import type { ConfigInput } from '../src/config/schema.ts';
import { startProxy, type Proxy } from '../src/main.ts';
import { startOrigin, type Origin, type OriginOptions } from '../src/lab/origin.ts';

export type LogLine = Record<string, unknown> & { type?: string; id?: string; error?: Record<string, unknown> };

export class LogCapture extends Writable {
  readonly lines: LogLine[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    for (const l of chunk.toString('utf8').split('\n')) if (l.trim()) this.lines.push(JSON.parse(l) as LogLine);
    cb();
  }
  access(): LogLine[] {
    return this.lines.filter((l) => l.type === 'access');
  }
  /** The access line of one request, waiting briefly because it is written when the response closes. */
  async forRequest(id: string): Promise<LogLine> {
    for (let i = 0; i < 100; i++) {
      const l = this.lines.find((x) => x.type === 'access' && x.id === id);
      if (l) return l;
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error(`no access log line for ${id}`);
  }
}

export type Harness = {
  proxy: Proxy;
  origins: Origin[];
  log: LogCapture;
  url: string;
  get(path: string, headers?: Record<string, string>, method?: string): Promise<Reply>;
  send(path: string, opts?: { method?: string; headers?: Record<string, string>; body?: string }): Promise<Reply>;
  close(): Promise<void>;
};

export type Reply = { status: number; headers: Record<string, string | string[] | undefined>; body: string; raw: Buffer };

export async function startHarness(
  opts: {
    origins?: OriginOptions[];
    /** Config keys, or a function of the origin URLs (origins start first, so pools and routes can name them). */
    config?: (Partial<ConfigInput> & Record<string, unknown>) | ((urls: string[]) => Record<string, unknown>);
    backendExtra?: Record<string, unknown>[];
    /** The proxy's freshness clock (see testClock), so tests move time without sleeping. */
    clock?: () => number;
  } = {},
): Promise<Harness> {
  const origins = await Promise.all((opts.origins ?? [{}]).map((o) => startOrigin(o)));
  const backends = origins.map((o, i) => ({ name: `app${i + 1}`, url: o.url, ...(opts.backendExtra?.[i] ?? {}) }));
  const extra = typeof opts.config === 'function' ? opts.config(origins.map((o) => o.url)) : (opts.config ?? {});
  // The admin listener defaults to 127.0.0.1:6082; tests bind it to an ephemeral port unless they choose one.
  const admin = { listen: '127.0.0.1:0', ...(extra.admin as Record<string, unknown> | undefined) };
  const config = validateConfig({ listen: '127.0.0.1:0', backends, ...extra, admin });
  const log = new LogCapture();
  const proxy = await startProxy(config, { logDestination: log, clock: opts.clock });
  const agent = new Agent({ keepAliveTimeout: 1000 });
  const url = proxy.url;
  const send: Harness['send'] = async (path, o = {}) => {
    const res = await request(`${url}${path}`, { method: (o.method ?? 'GET') as 'GET', headers: o.headers, body: o.body, dispatcher: agent });
    const raw = Buffer.from(await res.body.arrayBuffer());
    return { status: res.statusCode, headers: res.headers, body: raw.toString('utf8'), raw };
  };
  return {
    proxy,
    origins,
    log,
    url,
    get: (path, headers = {}, method = 'GET') => send(path, { method, headers }),
    send,
    async close() {
      await proxy.stop();
      await agent.close();
      await Promise.all(origins.map((o) => o.close()));
    },
  };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A clock for freshness tests (issue 11 item 19): wall time plus an offset the test advances, so an object
 * with `max-age=1` expires with `clock.advance(2000)` instead of a sleep. Origins' Date headers stay on wall
 * time, so a response fetched after advancing looks that much older (apparent age, RFC 9111 §4.2.3).
 */
export function testClock(): { now: () => number; advance(ms: number): void } {
  let offset = 0;
  return { now: () => Date.now() + offset, advance: (ms) => void (offset += ms) };
}

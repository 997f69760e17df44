// Server-Sent Events for the live dashboard (https://html.spec.whatwg.org/multipage/server-sent-events.html):
// one `snapshot` event with 15 minutes of history on connect, then one `tick` a second. The dashboard reads
// the stream with fetch() rather than EventSource so it can send the bearer token in a header, never in a URL.
import type { ServerResponse } from 'node:http';

/** Open streams at once; each costs a JSON rendering a second. */
export const MAX_STREAMS = 32;

export class EventStreams {
  readonly #clients = new Set<ServerResponse>();

  get size(): number {
    return this.#clients.size;
  }

  open(res: ServerResponse): void {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-accel-buffering': 'no',
    });
    res.flushHeaders();
    this.#clients.add(res);
    res.on('close', () => this.#clients.delete(res));
  }

  /** Writes one event; a client that cannot keep up (its buffer is full) is dropped rather than buffered without bound. */
  send(res: ServerResponse, event: string, data: unknown): void {
    if (res.writableLength > 4 * 1024 * 1024) {
      res.destroy();
      return;
    }
    res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  each(cb: (res: ServerResponse) => void): void {
    for (const c of this.#clients) cb(c);
  }

  closeAll(): void {
    for (const c of this.#clients) c.end();
    this.#clients.clear();
  }
}

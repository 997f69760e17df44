// Replay: a small request body of an idempotent method is read into memory before the first attempt, so
// the request can be sent again if that attempt fails (retry.ts). Bounded by `retries.body_buffer` and
// only when Content-Length says the body fits: a larger or chunked body streams once and is never retried
// after being sent.
import type { Readable } from 'node:stream';

export type Buffered =
  /** Read whole: send this Buffer (as often as needed). */
  | { kind: 'buffered'; body: Buffer }
  /** Not touched (too large or unknown size): stream it once. */
  | { kind: 'stream' }
  /** The client's body failed while being read (it left, or sent more than it announced). */
  | { kind: 'failed' };

export async function bufferBody(body: Readable, contentLength: string | undefined, maxBytes: number): Promise<Buffered> {
  const len = contentLength === undefined ? NaN : Number(contentLength);
  if (!Number.isInteger(len) || len < 0 || len > maxBytes) return { kind: 'stream' };
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      size += chunk.length;
      // Node's parser stops at Content-Length; this bound only guards against a body stream that does not.
      if (size > maxBytes) return { kind: 'failed' };
      chunks.push(chunk);
    }
  } catch {
    return { kind: 'failed' };
  }
  return { kind: 'buffered', body: Buffer.concat(chunks, size) };
}

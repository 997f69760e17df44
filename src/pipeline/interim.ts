// Interim responses (RFC 9110 §15.2): an origin's 103 Early Hints (RFC 8297) and other 1xx reach the client
// before the final response, so a browser can start fetching what `Link: rel=preload` names while the origin
// is still working. Never cached (RFC 9111 §3: only final responses are stored), never merged into the final
// response's headers, and never sent to an HTTP/1.0 client, which cannot parse them (§15.2: a server MUST NOT).
import type { ServerResponse } from 'node:http';
import type { Headers } from '../cache/storable.ts';
import type { Exchange } from '../server/exchange.ts';
import { responseHeaderList } from './headers.ts';

/** The private writer Node's own writeEarlyHints and writeContinue use: raw bytes ahead of the response head. */
type RawWriter = { _writeRaw(data: string, encoding: BufferEncoding): boolean };

/** Field values that would break the framing if written raw (undici's parser already rejects them; belt and braces). */
const UNSAFE = /[\r\n\0]/;

/** Forwards one interim response; false when it was not sent (client gone, head already sent, HTTP/1.0, HTTP/2). */
export function forwardInterim(ex: Exchange, status: number, headers: Headers, statusMessage: string, via: string): boolean {
  const { req, res } = ex;
  if (ex.clientGone || res.headersSent || req.httpVersionMajor !== 1 || req.httpVersionMinor < 1) return false;
  if (status < 102 || status > 199) return false; // 100 is consumed, 101 never forwarded
  const list = responseHeaderList(headers, via);
  let head = `HTTP/1.1 ${status} ${UNSAFE.test(statusMessage) || !statusMessage ? 'Interim' : statusMessage}\r\n`;
  for (let i = 0; i < list.length; i += 2) {
    if (UNSAFE.test(list[i]!) || UNSAFE.test(list[i + 1]!)) continue;
    head += `${list[i]}: ${list[i + 1]}\r\n`;
  }
  (res as ServerResponse & RawWriter)._writeRaw(`${head}\r\n`, 'latin1');
  return true;
}

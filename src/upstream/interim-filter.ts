// Unsolicited `100 Continue` from an origin (issue 10 item 3). RFC 9110 §15.2 says a client MUST be able to
// parse one or more 1xx responses before the final response, even unexpected ones, and §15.2.1 lets a
// client that did not send `Expect: 100-continue` simply discard a 100. undici's HTTP/1.1 parser instead
// destroys the socket on any 100 ("bad response"), which Lacquer saw as `connection_terminated` — an
// outage for an origin that always sends one. undici cannot be told otherwise, so the 100 heads are taken
// out of the byte stream before its parser sees them; other 1xx (103 Early Hints ...) pass through and
// reach fetch.ts's onInterim.
//
// Each origin socket is hooked once, when undici publishes it on its documented diagnostics channel
// `undici:client:connected` (before any request is written). Module-level on purpose, like
// socket-reuse.ts: the channel is process-wide.
import { subscribe } from 'node:diagnostics_channel';
import type { Socket } from 'node:net';

/** The start of an undici HTTP/1.1 request head (`method SP target SP HTTP/1.1 CRLF`). */
const REQUEST_LINE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+ \S+ HTTP\/1\.1\r\n/;
const HEAD_END = Buffer.from('\r\n\r\n');
/** Longest interim head we hold while deciding; past it the bytes go to undici, which enforces its own limit. */
const MAX_INTERIM_HEAD = 64 * 1024;
const EMPTY: Buffer = Buffer.alloc(0);

subscribe('undici:client:connected', (message) => {
  const socket = (message as { socket?: Socket }).socket;
  if (socket) dropContinues(socket);
});

/** Could `b` (possibly partial) be the start of a 1xx status line? */
function mayBeInterim(b: Buffer): boolean {
  const probe = b.toString('latin1', 0, Math.min(b.length, 10));
  return 'HTTP/1.1 1'.startsWith(probe) || 'HTTP/1.0 1'.startsWith(probe);
}

/**
 * Hooks one socket: after each request head is written, response bytes are examined until the final
 * response's status line starts; complete `100` heads in that window are dropped. No byte after the final
 * status line is looked at, so bodies are never parsed here.
 */
export function dropContinues(socket: Socket): void {
  let expecting = false;
  let held: Buffer = EMPTY;
  const write = socket.write;
  socket.write = function (this: Socket, chunk: unknown, ...rest: unknown[]) {
    if (typeof chunk === 'string' && REQUEST_LINE.test(chunk)) expecting = true;
    return (write as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
  } as Socket['write'];
  const push = socket.push;
  socket.push = function (this: Socket, chunk: unknown, encoding?: BufferEncoding): boolean {
    if (!expecting || !Buffer.isBuffer(chunk)) {
      if (chunk === null && held.length > 0) {
        push.call(this, held);
        held = EMPTY;
      }
      return push.call(this, chunk, encoding);
    }
    held = held.length > 0 ? Buffer.concat([held, chunk]) : chunk;
    let ok = true;
    while (expecting && held.length > 0) {
      if (!mayBeInterim(held)) {
        expecting = false; // the final response: everything from here on is undici's
        break;
      }
      const end = held.indexOf(HEAD_END);
      if (end === -1) {
        if (held.length > MAX_INTERIM_HEAD) expecting = false;
        break;
      }
      const head = held.subarray(0, end + HEAD_END.length);
      held = held.subarray(end + HEAD_END.length);
      if (!/^HTTP\/1\.[01] 100[ \r]/.test(head.toString('latin1', 0, 13))) ok = push.call(this, head);
    }
    if (!expecting && held.length > 0) {
      ok = push.call(this, held);
      held = EMPTY;
    }
    return ok;
  };
}

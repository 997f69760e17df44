// Was this request written to a reused keep-alive socket? The keep-alive race (FAILURES.md
// connection_terminated) may only be retried on that ground, but undici does not say: a reset socket
// fails the request with the bare ECONNRESET, which carries no socket facts. undici does publish the
// socket each request is written to on its documented diagnostics channel `undici:client:sendHeaders`,
// synchronously right after the dispatch handler's onRequestStart; so a handler registers a callback in
// onRequestStart and the very next publication is its own. Module-level on purpose: the channel itself
// is process-wide, and the handoff never outlives one synchronous write.
import { subscribe } from 'node:diagnostics_channel';
import type { Socket } from 'node:net';

/** Sockets that already carried a request (weak: closed sockets go with their last reference). */
const used = new WeakSet<Socket>();
let pending: ((reused: boolean) => void) | undefined;

subscribe('undici:client:sendHeaders', (message) => {
  const socket = (message as { socket?: Socket }).socket;
  const cb = pending;
  pending = undefined;
  if (!socket) return;
  const reused = used.has(socket);
  used.add(socket);
  cb?.(reused);
});

/** Call from onRequestStart: `cb` learns whether the socket the request is about to be written to was used before. */
export function onSocketChosen(cb: (reused: boolean) => void): void {
  pending = cb;
}

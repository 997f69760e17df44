// Who may use the admin plane. Read-only endpoints are open only on a loopback listener without a token;
// a configured token, or a non-loopback address (refused at config load without one), makes every call
// need `Authorization: Bearer <token>`. Writes (health overrides) always need the token: an open loopback
// port is reachable by any local process, and by web pages through DNS rebinding, which the Host check
// below also blocks for the open read-only case.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isLoopbackHost } from '../config/schema.ts';

export type AuthDecision = { ok: true } | { ok: false; status: 401 | 403; message: string };

export type AdminAuth = { decide(req: IncomingMessage, write: boolean): AuthDecision; readonly tokenRequired: boolean };

/** Compares digests so the comparison takes the same time whatever the lengths and the first differing byte. */
function sameToken(given: string, expected: Buffer): boolean {
  return timingSafeEqual(createHash('sha256').update(given).digest(), expected);
}

/** The host part of a Host header (`[::1]:6082` → `::1`). */
function hostOnly(h: string): string {
  if (h.startsWith('[')) return h.slice(1, h.indexOf(']'));
  const i = h.lastIndexOf(':');
  return i === -1 ? h : h.slice(0, i);
}

/** `token` is read on every decision, so a reloaded `admin.token` applies at once (rotation without restart). */
export function adminAuth(listenHost: string, token: string | undefined | (() => string | undefined)): AdminAuth {
  const current = typeof token === 'function' ? token : () => token;
  let digestOf: { token: string; digest: Buffer } | undefined;
  const expected = (): Buffer | undefined => {
    const t = current();
    if (t === undefined) return undefined;
    if (digestOf?.token !== t) digestOf = { token: t, digest: createHash('sha256').update(t).digest() };
    return digestOf.digest;
  };
  const loopback = isLoopbackHost(listenHost);
  return {
    get tokenRequired() {
      return current() !== undefined || !loopback;
    },
    decide(req, write) {
      const want = expected();
      if (want) {
        const h = req.headers.authorization ?? '';
        const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
        if (m && sameToken(m[1]!, want)) return { ok: true };
        return { ok: false, status: 401, message: h ? 'the bearer token does not match admin.token' : 'this admin endpoint needs `Authorization: Bearer <admin.token>`' };
      }
      if (!loopback) return { ok: false, status: 401, message: 'admin.token is required on a non-loopback admin address' };
      if (!isLoopbackHost(hostOnly(req.headers.host ?? ''))) {
        return { ok: false, status: 403, message: 'without admin.token the admin plane answers only requests addressed to a loopback host name' };
      }
      if (write) return { ok: false, status: 403, message: 'write endpoints need admin.token to be set (and sent as `Authorization: Bearer <token>`)' };
      return { ok: true };
    },
  };
}

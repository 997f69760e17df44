// The trial connect of a backend taken out for refusing connections (issue 9 item 3): a bare TCP connect,
// no request. A refusal says only "nothing listens here", so the question to ask before giving the backend
// its half-open trial request is exactly that one; it costs the origin nothing and no client waits on it.
import { connect } from 'node:net';

/** Whether a TCP connection to the origin's host and port opens within `timeoutMs`. Never throws. */
export function trialConnect(origin: string, timeoutMs: number): Promise<boolean> {
  const u = new URL(origin);
  const port = Number(u.port) || (u.protocol === 'https:' ? 443 : 80);
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
  return new Promise<boolean>((resolve) => {
    const socket = connect({ host, port });
    const done = (ok: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

// Doctor, step 2: a bare TCP connect to every resolved address, timed, bounded by the backend's
// `timeouts.connect` (the socket is destroyed when it trips: the timeout aborts the work it bounds).
import net from 'node:net';
import { performance } from 'node:perf_hooks';

export type TcpResult = { address: string; family: 4 | 6; port: number; ms: number; error?: string };

export function connectTime(address: string, family: 4 | 6, port: number, timeoutMs: number): Promise<TcpResult> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const socket = net.connect({ host: address, port, family });
    const done = (error?: string): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ address, family, port, ms: performance.now() - t0, ...(error ? { error } : {}) });
    };
    // 'ETIMEDOUT' is the code classifyFetchError maps to connection_timeout.
    const timer = setTimeout(() => done('ETIMEDOUT'), timeoutMs);
    socket.once('connect', () => done());
    socket.once('error', (e: NodeJS.ErrnoException) => done(e.code ?? 'UNKNOWN'));
  });
}

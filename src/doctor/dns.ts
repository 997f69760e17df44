// Doctor, step 1: resolve the backend's host name the way Lacquer's connections do — getaddrinfo via
// dns.lookup (undici's default), not dns.resolve, so /etc/hosts and the system resolver order apply.
// An IP literal or `localhost` resolves without any network traffic.
import { promises as dnsPromises, type LookupAddress } from 'node:dns';
import { performance } from 'node:perf_hooks';

export type Lookup = (host: string, opts: { all: true; verbatim: true }) => Promise<LookupAddress[]>;

export type DnsResult = {
  host: string;
  ms: number;
  addresses: { address: string; family: 4 | 6 }[];
  /** The resolver's error code when the name did not resolve (ENOTFOUND, EAI_AGAIN, ...). */
  error?: string;
};

export async function resolveHost(host: string, lookup: Lookup = (h, o) => dnsPromises.lookup(h, o)): Promise<DnsResult> {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  const t0 = performance.now();
  try {
    const all = await lookup(bare, { all: true, verbatim: true });
    const ms = performance.now() - t0;
    const addresses = all.map((a) => ({ address: a.address, family: (a.family === 6 ? 6 : 4) as 4 | 6 }));
    return addresses.length ? { host: bare, ms, addresses } : { host: bare, ms, addresses, error: 'ENODATA' };
  } catch (err) {
    return { host: bare, ms: performance.now() - t0, addresses: [], error: (err as NodeJS.ErrnoException).code ?? 'UNKNOWN' };
  }
}

// Doctor, the fleet's Redis (issue 13): can each instance reach it (connect, auth), how fast it answers
// compared with fleet.store.timeout, and whether its memory policy could evict what the fleet relies on.
import { openConns } from '../coord/redis-conn.ts';
import type { FleetConfig } from '../config/schema.ts';
import { formatDuration } from '../config/units.ts';
import { ms, SEVERITY_RANK, spread, type Severity } from './findings.ts';

export type FleetFinding = { severity: Severity; check: 'connect' | 'auth' | 'latency' | 'memory'; message: string; fix?: string };
export type FleetReport = { redis: string; findings: FleetFinding[]; severity: Severity; pingMs: number[] };

const PINGS = 5;
const CONNECT_TIMEOUT_MS = 3000;

/** The URL without its password, for printing. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@');
}

export async function checkFleet(f: FleetConfig): Promise<FleetReport> {
  const findings: FleetFinding[] = [];
  const pingMs: number[] = [];
  // The coordinator's own connection (plain or through Sentinel), without retries: one attempt, judged.
  const client = openConns({ url: f.redis, connectTimeoutMs: CONNECT_TIMEOUT_MS, reconnectStrategy: false }).cmd;
  let lastError: Error | undefined;
  client.on('error', (err: Error) => (lastError = err));
  try {
    await client.connect();
  } catch (err) {
    const e = lastError ?? (err as Error);
    const auth = /NOAUTH|WRONGPASS|AUTH|invalid password|invalid username/i.test(e.message);
    findings.push(
      auth
        ? { severity: 'fail', check: 'auth', message: `Redis refused the credentials: ${e.message}`, fix: 'Put the right password in fleet.redis (redis://:${REDIS_PASSWORD}@host:6379/0) or the ACL user (redis://user:pass@...).' }
        : { severity: 'fail', check: 'connect', message: `cannot connect to ${redactUrl(f.redis)}: ${e.message}`, fix: 'Check the host, port and network path; with TLS use rediss://. Instances serve alone (no sharing) until it is reachable.' },
    );
    client.destroy();
    return report(f, findings, pingMs);
  }
  try {
    findings.push({ severity: 'ok', check: 'connect', message: `connected to ${redactUrl(f.redis)}` });
    for (let i = 0; i < PINGS; i++) {
      const t0 = performance.now();
      await client.send(['PING']);
      pingMs.push(performance.now() - t0);
    }
    const s = spread(pingMs)!;
    const limit = f.store.timeout;
    if (s.median > limit) findings.push({ severity: 'fail', check: 'latency', message: `PING median ${ms(s.median)} is above fleet.store.timeout ${formatDuration(limit)}: nearly every lookup will be skipped`, fix: 'Run Redis closer to the instances, or raise fleet.store.timeout.' });
    else if (s.max > limit / 2) findings.push({ severity: 'warn', check: 'latency', message: `PING max ${ms(s.max)} is over half of fleet.store.timeout ${formatDuration(limit)}: some lookups will be skipped under load`, fix: 'Check Redis load and the network; or raise fleet.store.timeout.' });
    else findings.push({ severity: 'ok', check: 'latency', message: `PING ${ms(s.min)} / ${ms(s.median)} / ${ms(s.max)} (min/median/max), well within ${formatDuration(limit)}` });
    findings.push(await memoryPolicy(async () => configRecord(await client.send<unknown>(['CONFIG', 'GET', 'maxmemory*']))));
  } catch (err) {
    findings.push({ severity: 'fail', check: 'connect', message: `Redis failed while checking: ${(err as Error).message}` });
  } finally {
    await client.close().catch(() => client.destroy());
  }
  return report(f, findings, pingMs);
}

/** CONFIG GET answers a map (RESP3) or a flat name, value list (RESP2). */
function configRecord(r: unknown): Record<string, unknown> {
  if (r instanceof Map) return Object.fromEntries([...r].map(([k, v]) => [String(k), v]));
  if (Array.isArray(r)) {
    const out: Record<string, unknown> = {};
    for (let i = 0; i + 1 < r.length; i += 2) out[String(r[i])] = r[i + 1];
    return out;
  }
  return (r ?? {}) as Record<string, unknown>;
}

async function memoryPolicy(read: () => Promise<Record<string, unknown>>): Promise<FleetFinding> {
  let policy: string;
  let maxmemory: number;
  try {
    const c = await read();
    policy = String(c['maxmemory-policy']);
    maxmemory = Number(c['maxmemory']);
  } catch (err) {
    // Managed Redis often disables CONFIG: say what to check by hand.
    return { severity: 'warn', check: 'memory', message: `could not read the memory policy (${(err as Error).message})`, fix: 'Make sure maxmemory-policy does not evict keys with a TTL (see README "Running a fleet").' };
  }
  if (maxmemory === 0) return { severity: 'warn', check: 'memory', message: `maxmemory is 0 (unbounded): Redis grows with the shared objects until the machine runs out of memory`, fix: 'Set maxmemory, with maxmemory-policy volatile-ttl (evicts the objects nearest expiry first).' };
  if (policy === 'noeviction') return { severity: 'warn', check: 'memory', message: 'maxmemory-policy noeviction: when Redis is full, new objects and locks are refused (counted as fleet errors; instances fetch alone)', fix: 'volatile-ttl keeps serving: it evicts the objects nearest expiry, which locks (short TTL) can be too — a lost lock costs one duplicate origin fetch, never an error.' };
  if (policy.startsWith('allkeys-')) return { severity: 'warn', check: 'memory', message: `maxmemory-policy ${policy} may evict fetch locks and the invalidation log (locks: duplicate origin fetches; log: instances that fall behind drop their local cache)`, fix: 'Use volatile-ttl, or give the fleet its own Redis.' };
  if (policy.startsWith('volatile-') && policy !== 'volatile-ttl') return { severity: 'warn', check: 'memory', message: `maxmemory-policy ${policy} may evict fetch locks while objects with longer TTLs stay (duplicate origin fetches, never errors)`, fix: 'volatile-ttl evicts the objects nearest expiry first.' };
  return { severity: 'ok', check: 'memory', message: `maxmemory ${maxmemory} bytes, maxmemory-policy ${policy}` };
}

function report(f: FleetConfig, findings: FleetFinding[], pingMs: number[]): FleetReport {
  const severity = findings.reduce<Severity>((w, x) => (SEVERITY_RANK[x.severity] > SEVERITY_RANK[w] ? x.severity : w), 'ok');
  return { redis: redactUrl(f.redis), findings, severity, pingMs: pingMs.map((x) => Math.round(x * 100) / 100) };
}

export function formatFleet(r: FleetReport): string {
  const label: Record<Severity, string> = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL' };
  const lines = [`fleet  ${r.redis}  [${r.severity.toUpperCase()}]`];
  for (const f of r.findings) {
    lines.push(`  ${label[f.severity]} ${f.check}: ${f.message}`);
    if (f.fix) lines.push(`       fix: ${f.fix}`);
  }
  return `${lines.join('\n')}\n`;
}

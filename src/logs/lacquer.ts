// Lacquer's own access log (src/observe/access-log.ts): one JSON object per line. `type: access` is a
// client request, with `error` (the FAILURES.md report) when a fetch failed — even when a stale object
// covered it; `type: background` is a failed background refresh. Other lines (start, stop) are not requests.
import { pathOf, statusFailure, type LogRecord } from './record.ts';

type Obj = Record<string, unknown>;
const str = (v: unknown): string | undefined => (typeof v === 'string' && v ? v : undefined);

function lastAttemptBackend(attempts: unknown): string | undefined {
  if (!Array.isArray(attempts) || !attempts.length) return undefined;
  const a = attempts[attempts.length - 1] as Obj | null;
  return a && typeof a === 'object' ? str(a.backend) : undefined;
}

/** null: a JSON line that is not an access or background line (not counted as unrecognised). */
export function parseLacquer(o: Obj): LogRecord | null {
  const type = o.type;
  if (type !== 'access' && type !== 'background') return null;
  const t = typeof o.time === 'string' ? Date.parse(o.time) : typeof o.time === 'number' ? o.time : NaN;
  const err = o.error && typeof o.error === 'object' ? (o.error as Obj) : undefined;
  const status = typeof o.status === 'number' ? o.status : undefined;
  const url = str(o.url) ?? str(err?.url);
  return {
    format: 'lacquer',
    time: Number.isFinite(t) ? t : undefined,
    kind: type === 'access' ? 'request' : 'background',
    status,
    failure: str(err?.class) ?? statusFailure(status),
    backend: str(err?.backend) ?? lastAttemptBackend(o.attempts) ?? str(o.backend),
    path: url ? pathOf(url) : undefined,
    servedStale: err !== undefined && o.served === 'stale',
  };
}

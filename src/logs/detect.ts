// Format detection, per line, so files of several proxies (or a rotated mix) can be read in one run.
import { parseLacquer } from './lacquer.ts';
import { parseNcsa } from './ncsa.ts';
import type { LogRecord } from './record.ts';

/** A record; `null` for a recognised line that is not a request (Lacquer start/stop messages); `undefined` when unrecognised. */
export function parseLine(line: string): LogRecord | null | undefined {
  const s = line.trimStart();
  if (!s) return null;
  if (s[0] === '{') {
    let o: unknown;
    try {
      o = JSON.parse(s);
    } catch {
      return undefined;
    }
    return o && typeof o === 'object' && !Array.isArray(o) ? parseLacquer(o as Record<string, unknown>) : undefined;
  }
  return parseNcsa(s) ?? undefined;
}

// One access-log line, whatever proxy wrote it, reduced to what the analysis needs.

export type LogFormat = 'lacquer' | 'varnishncsa' | 'nginx';
export const LOG_FORMATS: readonly LogFormat[] = ['lacquer', 'varnishncsa', 'nginx'];

export type LogRecord = {
  format: LogFormat;
  /** Epoch ms; undefined when the line had no parsable time. */
  time: number | undefined;
  /** A client request (access line), or a failed background refresh (no client saw it). */
  kind: 'request' | 'background';
  status?: number;
  /** RFC 9209 class from Lacquer's log, else `status 503` etc. for a 5xx without one; undefined for a success. */
  failure?: string;
  backend?: string;
  /** Path without query. */
  path?: string;
  /** A stale object was served in place of this failure (Lacquer only). */
  servedStale?: boolean;
};

/** Keys of the top lists are cut to this length, so one absurd URL cannot take much memory. */
export const MAX_KEY_LENGTH = 200;

export function pathOf(target: string): string {
  let p = target;
  if (/^https?:\/\//i.test(p)) {
    const slash = p.indexOf('/', p.indexOf('//') + 2);
    p = slash === -1 ? '/' : p.slice(slash);
  }
  const q = p.indexOf('?');
  if (q !== -1) p = p.slice(0, q);
  return p.length > MAX_KEY_LENGTH ? `${p.slice(0, MAX_KEY_LENGTH)}…` : p;
}

export function statusFailure(status: number | undefined): string | undefined {
  return status !== undefined && status >= 500 && status <= 599 ? `status ${status}` : undefined;
}

// NCSA combined lines: Varnish's `varnishncsa` default format
//   %h %l %u %t "%r" %s %b "%{Referer}i" "%{User-agent}i"
// and nginx's `combined` log_format, which has the same shape. They differ in %r: varnishncsa rebuilds the
// request line with the absolute URL (`GET http://host/path HTTP/1.1`), nginx logs it as received
// (`GET /path HTTP/1.1`) — that is how a line is told apart. Neither records why a 5xx happened, so these
// lines give a status-only analysis. The common log format (no referer / user agent) is accepted too.
import { pathOf, statusFailure, type LogRecord } from './record.ts';

const LINE = /^(\S+) (\S+) (.+?) \[([^\]]+)\] "((?:[^"\\]|\\.)*)" (\d{3}) (\S+)(?: "(?:[^"\\]|\\.)*" "(?:[^"\\]|\\.)*")?/;
const MONTHS: Record<string, number> = { Jan: 0, Feb: 1, Mar: 2, Apr: 3, May: 4, Jun: 5, Jul: 6, Aug: 7, Sep: 8, Oct: 9, Nov: 10, Dec: 11 };
// 10/Oct/2000:13:55:36 -0700
const TIME = /^(\d{2})\/([A-Z][a-z]{2})\/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})$/;

export function parseNcsaTime(s: string): number | undefined {
  const m = TIME.exec(s);
  if (!m || MONTHS[m[2]!] === undefined) return undefined;
  const utc = Date.UTC(Number(m[3]), MONTHS[m[2]!]!, Number(m[1]), Number(m[4]), Number(m[5]), Number(m[6]));
  const offset = (m[7] === '-' ? -1 : 1) * (Number(m[8]) * 60 + Number(m[9])) * 60_000;
  return utc - offset;
}

export function parseNcsa(line: string): LogRecord | null {
  const m = LINE.exec(line);
  if (!m) return null;
  const request = m[5]!.split(' ');
  const target = request.length >= 2 ? request[1]! : undefined;
  const status = Number(m[6]);
  return {
    format: target && /^https?:\/\//i.test(target) ? 'varnishncsa' : 'nginx',
    time: parseNcsaTime(m[4]!),
    kind: 'request',
    status,
    failure: statusFailure(status),
    path: target ? pathOf(target) : undefined,
  };
}

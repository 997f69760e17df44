// PROXY protocol v1 (text) and v2 (binary), as HAProxy specifies it (doc/proxy-protocol.txt): a load
// balancer in front tells who the client is before the first byte of TLS or HTTP. A listener that expects
// it refuses connections without it — otherwise any client could claim any address.
import { isIPv4, isIPv6, type Socket } from 'node:net';

export type ProxyHeader =
  /** The client as the load balancer saw it. */
  | { kind: 'proxied'; address: string; port: number; family: 'IPv4' | 'IPv6' }
  /** `PROXY UNKNOWN` or a v2 LOCAL command (the balancer's own health check): keep the socket's address. */
  | { kind: 'local' };

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
/** §2.1: a v1 line is at most 107 bytes including CRLF. */
const V1_MAX = 107;
/** v2 header: 16 fixed bytes + at most this much address and TLV data that we accept. */
const V2_MAX_PAYLOAD = 4096;
/** How long a connection may take to send its PROXY header. */
export const PROXY_HEADER_TIMEOUT_MS = 5000;

export type Parsed = { header: ProxyHeader; length: number } | { need: true } | { error: string };

/** Parses a header at the start of `buf`: the header and its length, a request for more bytes, or why it is invalid. */
export function parseProxyHeader(buf: Buffer): Parsed {
  if (buf.length === 0) return { need: true };
  if (buf[0] === 0x0d) return parseV2(buf);
  if (buf[0] === 0x50) return parseV1(buf);
  return { error: 'no PROXY protocol header' };
}

function parseV1(buf: Buffer): Parsed {
  const prefix = 'PROXY ';
  const head = buf.subarray(0, prefix.length).toString('latin1');
  if (!prefix.startsWith(head)) return { error: 'no PROXY protocol header' };
  const end = buf.indexOf('\r\n');
  if (end === -1) return buf.length >= V1_MAX ? { error: 'PROXY v1 line longer than 107 bytes' } : { need: true };
  const parts = buf.subarray(0, end).toString('latin1').split(' ');
  const length = end + 2;
  if (parts[1] === 'UNKNOWN') return { header: { kind: 'local' }, length };
  if (parts.length !== 6 || (parts[1] !== 'TCP4' && parts[1] !== 'TCP6')) return { error: `malformed PROXY v1 line ${JSON.stringify(parts.join(' '))}` };
  const [, proto, src, , sport] = parts as [string, string, string, string, string, string];
  const port = Number(sport);
  const valid = proto === 'TCP4' ? isIPv4(src) : isIPv6(src);
  if (!valid || !Number.isInteger(port) || port < 0 || port > 65535) return { error: `malformed PROXY v1 address ${src}:${sport}` };
  return { header: { kind: 'proxied', address: src, port, family: proto === 'TCP4' ? 'IPv4' : 'IPv6' }, length };
}

function parseV2(buf: Buffer): Parsed {
  const n = Math.min(buf.length, V2_SIGNATURE.length);
  if (!buf.subarray(0, n).equals(V2_SIGNATURE.subarray(0, n))) return { error: 'no PROXY protocol header' };
  if (buf.length < 16) return { need: true };
  const verCmd = buf[12]!;
  if (verCmd >> 4 !== 2) return { error: `PROXY v2 header with version ${verCmd >> 4}` };
  const len = buf.readUInt16BE(14);
  if (len > V2_MAX_PAYLOAD) return { error: `PROXY v2 header of ${len} bytes` };
  if (buf.length < 16 + len) return { need: true };
  const length = 16 + len;
  const cmd = verCmd & 0x0f;
  if (cmd === 0x0) return { header: { kind: 'local' }, length };
  if (cmd !== 0x1) return { error: `PROXY v2 command ${cmd}` };
  const family = buf[13]! >> 4;
  const body = buf.subarray(16, length);
  if (family === 0x1 && len >= 12) {
    const address = [...body.subarray(0, 4)].join('.');
    return { header: { kind: 'proxied', address, port: body.readUInt16BE(8), family: 'IPv4' }, length };
  }
  if (family === 0x2 && len >= 36) {
    const groups: string[] = [];
    for (let i = 0; i < 16; i += 2) groups.push(body.readUInt16BE(i).toString(16));
    return { header: { kind: 'proxied', address: compressIPv6(groups), port: body.readUInt16BE(32), family: 'IPv6' }, length };
  }
  // UNSPEC or UNIX sockets: nothing to say about the client.
  return { header: { kind: 'local' }, length };
}

/** The canonical text form (RFC 5952), as Node prints peer addresses: the URL parser does that. */
function compressIPv6(groups: string[]): string {
  return new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1);
}

/**
 * Reads the PROXY header off a fresh connection, then calls `next` with the socket (the bytes after the
 * header put back), its peer address replaced by the client's. A missing or invalid header, or none within
 * PROXY_HEADER_TIMEOUT_MS, closes the connection.
 */
export function readProxyHeader(socket: Socket, next: (socket: Socket) => void, onRefused?: (why: string) => void): void {
  let buf: Buffer = Buffer.alloc(0);
  const timer = setTimeout(() => refuse('no PROXY protocol header within 5s'), PROXY_HEADER_TIMEOUT_MS);
  const refuse = (why: string) => {
    cleanup();
    onRefused?.(why);
    socket.destroy();
  };
  const cleanup = () => {
    clearTimeout(timer);
    socket.off('data', onData);
    socket.off('error', onError);
    socket.off('end', onEnd);
  };
  const onError = () => cleanup();
  const onEnd = () => refuse('connection closed before its PROXY protocol header');
  const onData = (chunk: Buffer) => {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    const p = parseProxyHeader(buf);
    if ('need' in p) return;
    if ('error' in p) return refuse(p.error);
    cleanup();
    socket.pause();
    if (p.header.kind === 'proxied') {
      Object.defineProperties(socket, {
        remoteAddress: { value: p.header.address, configurable: true },
        remotePort: { value: p.header.port, configurable: true },
        remoteFamily: { value: p.header.family, configurable: true },
      });
    }
    const rest = buf.subarray(p.length);
    if (rest.length) socket.unshift(rest);
    next(socket);
  };
  socket.on('data', onData);
  socket.on('error', onError);
  socket.on('end', onEnd);
}

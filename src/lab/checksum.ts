import { createHash } from 'node:crypto';

/** Header carrying the body checksum on every lab-origin response that has a body. */
export const CHECKSUM_HEADER = 'x-lab-checksum';

/** `sha256-<hex>` of the given bytes. */
export function checksum(buf: Uint8Array): string {
  return `sha256-${createHash('sha256').update(buf).digest('hex')}`;
}

/** True when `header` (an `x-lab-checksum` value) matches the bytes. */
export function verifyChecksum(header: string | string[] | undefined | null, body: Uint8Array): boolean {
  const value = Array.isArray(header) ? header[0] : header;
  return typeof value === 'string' && value === checksum(body);
}

// Warm restart: the cache written to disk and read back, so a restart does not send a stampede of misses
// to the origin (unlike Varnish's malloc storage). Crash-safe: written to a temp file, fsynced, renamed
// over the old snapshot; checksummed as a whole (SHA-256 trailer) and per body, so a truncated or
// corrupted snapshot is detected and skipped — never served.
import { createHash } from 'node:crypto';
import { open, readFile, rename, unlink, mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { exactBody, retentionMs, type CachedObject } from './object.ts';
import type { Store } from './store.ts';

const MAGIC = Buffer.from('LACQUER-SNAPSHOT 1\n');
const TRAILER_BYTES = 32 + 4; // sha256 + record count

type Meta = Omit<CachedObject, 'body'> & { bodySha256: string; bodyLength: number };

export type SnapshotWriteResult = { objects: number; bytes: number; ms: number };
export type SnapshotLoadResult =
  | { kind: 'loaded'; objects: number; skippedExpired: number; ms: number }
  | { kind: 'missing' }
  | { kind: 'corrupt'; reason: string };

/** Writes every object still worth keeping; returns counts. */
export async function writeSnapshot(store: Store, path: string, now = Date.now()): Promise<SnapshotWriteResult> {
  const t0 = performance.now();
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  const fh = await open(tmp, 'w');
  const whole = createHash('sha256');
  let count = 0;
  let bytes = 0;
  const write = async (buf: Buffer) => {
    whole.update(buf);
    bytes += buf.length;
    await fh.write(buf);
  };
  try {
    await write(MAGIC);
    for (const [, o] of store.entries()) {
      if (retentionMs(o, now) <= 1) continue;
      const { body, ...rest } = o;
      const meta: Meta = { ...rest, bodySha256: createHash('sha256').update(body).digest('hex'), bodyLength: body.length };
      const metaBuf = Buffer.from(JSON.stringify(meta));
      const len = Buffer.alloc(4);
      len.writeUInt32BE(metaBuf.length);
      await write(len);
      await write(metaBuf);
      await write(body);
      count++;
    }
    const trailer = Buffer.alloc(TRAILER_BYTES);
    whole.digest().copy(trailer, 0);
    trailer.writeUInt32BE(count, 32);
    await fh.write(trailer);
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fh.close();
  await rename(tmp, path);
  return { objects: count, bytes: bytes + TRAILER_BYTES, ms: Math.round(performance.now() - t0) };
}

/** Loads a snapshot into the store, objects past their retention skipped. Nothing is loaded from a corrupt file. */
export async function loadSnapshot(store: Store, path: string, now = Date.now()): Promise<SnapshotLoadResult> {
  const t0 = performance.now();
  let buf: Buffer;
  try {
    buf = await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'missing' };
    return { kind: 'corrupt', reason: `unreadable: ${(err as Error).message}` };
  }
  if (buf.length < MAGIC.length + TRAILER_BYTES || !buf.subarray(0, MAGIC.length).equals(MAGIC)) return { kind: 'corrupt', reason: 'not a Lacquer snapshot (bad header or too short)' };
  const content = buf.subarray(0, buf.length - TRAILER_BYTES);
  const trailer = buf.subarray(buf.length - TRAILER_BYTES);
  if (!createHash('sha256').update(content).digest().equals(trailer.subarray(0, 32))) return { kind: 'corrupt', reason: 'checksum mismatch (truncated or modified)' };
  const expected = trailer.readUInt32BE(32);
  // Parse everything first: a snapshot is loaded whole or not at all.
  const objects: CachedObject[] = [];
  let at = MAGIC.length;
  try {
    while (at < content.length) {
      const metaLen = content.readUInt32BE(at);
      at += 4;
      const meta = JSON.parse(content.subarray(at, at + metaLen).toString('utf8')) as Meta;
      at += metaLen;
      const slice = content.subarray(at, at + meta.bodyLength);
      // Its own allocation: a view would keep the whole snapshot file's buffer alive.
      const body = exactBody([slice], slice.length);
      at += meta.bodyLength;
      if (body.length !== meta.bodyLength || createHash('sha256').update(body).digest('hex') !== meta.bodySha256) throw new Error(`body checksum mismatch for ${meta.key}`);
      const { bodySha256: _s, bodyLength: _l, ...rest } = meta;
      objects.push({ ...rest, body });
    }
  } catch (err) {
    return { kind: 'corrupt', reason: `bad record: ${(err as Error).message}` };
  }
  if (objects.length !== expected) return { kind: 'corrupt', reason: `expected ${expected} records, found ${objects.length}` };
  let loaded = 0;
  let skipped = 0;
  // entries() lists most recently used first; insert oldest first so recency survives the restart.
  for (let i = objects.length - 1; i >= 0; i--) {
    const o = objects[i]!;
    if (retentionMs(o, now) <= 1 || !store.put(o, now)) skipped++;
    else loaded++;
  }
  return { kind: 'loaded', objects: loaded, skippedExpired: skipped, ms: Math.round(performance.now() - t0) };
}

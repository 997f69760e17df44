// CachedObject ⇄ SharedObject: the object as it crosses a coordinator (bytes + JSON-safe metadata), like
// the warm-restart snapshot's records (cache/persist.ts). `storedAt` survives, so bans issued after the
// object first entered any cache still apply to it (cache/invalidate.ts verdict()).
import { markStale, type CachedObject } from '../cache/object.ts';
import type { SharedObject } from './types.ts';

type Meta = Omit<CachedObject, 'body' | 'key' | 'primary' | 'varyFields' | 'tags'>;

export function encodeObject(o: CachedObject): SharedObject {
  // Not the compressed forms (made again where needed): they hold functions a structured clone refuses.
  const { body, key, primary, varyFields, tags, encoded: _forms, ...meta } = o;
  return { key, primary, varyFields, tags, meta: meta as Record<string, unknown>, body };
}

/** Undefined when the metadata is not what encodeObject wrote (another version, a corrupt entry): treated as a miss. */
export function decodeObject(s: SharedObject): CachedObject | undefined {
  const m = s.meta as Partial<Meta>;
  if (typeof m.status !== 'number' || typeof m.expiresAt !== 'number' || !Array.isArray(m.rawHeaders) || typeof m.freshness !== 'object' || typeof m.storedAt !== 'number') return undefined;
  const o = { ...(m as Meta), key: s.key, primary: s.primary, varyFields: s.varyFields, tags: s.tags, body: s.body } as CachedObject;
  // A soft purge or soft ban reached the shared copy after it was written: it is stale from that moment.
  if (s.invalidatedAt !== undefined) markStale(o, s.invalidatedAt);
  return o;
}

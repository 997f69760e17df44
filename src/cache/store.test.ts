// The object store: Vary variants (RFC 9111 §4.1), the LRU memory bound, and the per-object questions
// asked at lookup (state, Age §4.2.3, Cache-Status ttl RFC 9211 §2.6).
import { describe, expect, it } from 'vitest';
import { parseVary, varyKey } from './key.ts';
import { ageSeconds, objectState, ttlSeconds, type CachedObject } from './object.ts';
import type { Freshness } from './storable.ts';
import { MemoryStore } from './store.ts';

const NOW = Date.UTC(2025, 0, 15, 12, 0, 0);

const FRESHNESS: Freshness = {
  lifetime: { ms: 60_000, source: 'max-age' },
  initialAgeMs: 0,
  swrMs: 10_000,
  sieMs: 20_000,
  keepMs: 30_000,
  noStaleServe: false,
  alwaysRevalidate: false,
};

function obj(primary: string, o: { vary?: string[]; req?: Record<string, string>; size?: number; freshness?: Partial<Freshness> } = {}): CachedObject {
  const fields = o.vary ?? [];
  const freshness = { ...FRESHNESS, ...o.freshness };
  const x = {
    primary,
    key: fields.length ? primary + varyKey(fields, o.req ?? {}) : primary,
    status: 200,
    headers: {},
    body: Buffer.alloc(0),
    size: o.size ?? 1000,
    responseTimeMs: NOW,
    requestTimeMs: NOW,
    expiresAt: NOW + freshness.lifetime.ms - freshness.initialAgeMs,
    freshness,
    varyFields: fields,
    invalidated: false,
  } satisfies Partial<CachedObject>;
  return x as unknown as CachedObject;
}

describe('Vary (RFC 9111 §4.1)', () => {
  it('§4.1: field names are case-insensitive, sorted, deduplicated; * is kept apart', () => {
    expect(parseVary('Accept-Encoding, accept-language, Accept-Encoding')).toEqual(['accept-encoding', 'accept-language']);
    expect(parseVary(['Accept', '*'])).toBe('*');
    expect(parseVary(undefined)).toEqual([]);
  });

  it('§4.1: values are normalised (whitespace after commas), and an absent field differs from an empty one', () => {
    expect(varyKey(['accept-encoding'], { 'accept-encoding': 'gzip, br' })).toBe(varyKey(['accept-encoding'], { 'accept-encoding': 'gzip,br' }));
    expect(varyKey(['accept-encoding'], {})).not.toBe(varyKey(['accept-encoding'], { 'accept-encoding': '' }));
  });

  it('§4.1: each variant is stored; a request matching none is a vary-miss, an unknown URI a uri-miss', () => {
    const s = new MemoryStore(1 << 20);
    s.put(obj('h/a', { vary: ['accept-encoding'], req: { 'accept-encoding': 'gzip' } }), NOW);
    s.put(obj('h/a', { vary: ['accept-encoding'], req: { 'accept-encoding': 'br' } }), NOW);
    expect(s.lookup('h/a', { 'accept-encoding': 'gzip' }).kind).toBe('found');
    expect(s.lookup('h/a', { 'accept-encoding': 'br' }).kind).toBe('found');
    expect(s.lookup('h/a', { 'accept-encoding': 'zstd' }).kind).toBe('vary-miss');
    expect(s.lookup('h/b', {}).kind).toBe('uri-miss');
    expect(s.stats().objects).toBe(2);
  });

  it('§4.4: removeAll drops every variant of the URI', () => {
    const s = new MemoryStore(1 << 20);
    s.put(obj('h/a', { vary: ['accept-encoding'], req: { 'accept-encoding': 'gzip' } }), NOW);
    s.put(obj('h/a', { vary: ['accept-encoding'], req: { 'accept-encoding': 'br' } }), NOW);
    expect(s.removeAll('h/a')).toBe(2);
    expect(s.lookup('h/a', { 'accept-encoding': 'gzip' }).kind).toBe('uri-miss');
  });

  it('§4.1: a new Vary for the URI replaces the variants stored under the old one', () => {
    const s = new MemoryStore(1 << 20);
    s.put(obj('h/a', { vary: ['accept-encoding'], req: { 'accept-encoding': 'gzip' } }), NOW);
    s.put(obj('h/a', { vary: ['accept-language'], req: { 'accept-language': 'en' } }), NOW);
    expect(s.stats().objects).toBe(1);
    expect(s.lookup('h/a', { 'accept-language': 'en', 'accept-encoding': 'gzip' }).kind).toBe('found');
  });
});

describe('memory bound (cache.memory)', () => {
  it('evicts the least recently used object beyond cache.memory', () => {
    const s = new MemoryStore(3000);
    s.put(obj('h/1'), NOW);
    s.put(obj('h/2'), NOW);
    s.put(obj('h/3'), NOW);
    expect(s.lookup('h/1', {}).kind).toBe('found'); // h/1 is now the most recently used
    s.put(obj('h/4'), NOW);
    expect(s.lookup('h/2', {}).kind).toBe('uri-miss');
    expect(['h/1', 'h/3', 'h/4'].map((k) => s.lookup(k, {}).kind)).toEqual(['found', 'found', 'found']);
    expect(s.stats()).toMatchObject({ objects: 3, bytes: 3000, evictions: 1 });
  });

  it('refuses an object larger than the whole bound', () => {
    const s = new MemoryStore(3000);
    expect(s.put(obj('h/big', { size: 3001 }), NOW)).toBe(false);
    expect(s.stats().objects).toBe(0);
  });
});

describe('object state at lookup', () => {
  const o = obj('h/a');

  it('§4.2: fresh before expiry, then stale-while-revalidate, stale-if-error, keep', () => {
    expect(objectState(o, NOW + 59_000)).toBe('fresh');
    expect(objectState(o, NOW + 65_000)).toBe('stale-revalidate');
    expect(objectState(o, NOW + 75_000)).toBe('stale-if-error');
    expect(objectState(o, NOW + 85_000)).toBe('keep');
  });

  it('§4.2.4: noStaleServe objects go straight to keep; alwaysRevalidate (no-cache) is never fresh', () => {
    expect(objectState(obj('h/a', { freshness: { noStaleServe: true } }), NOW + 61_000)).toBe('keep');
    expect(objectState(obj('h/a', { freshness: { alwaysRevalidate: true, noStaleServe: true } }), NOW + 1000)).toBe('keep');
  });

  it('§4.2.3: Age grows with residence time and includes the initial age', () => {
    const aged = obj('h/a', { freshness: { initialAgeMs: 100_000 } });
    expect(ageSeconds(aged, NOW)).toBe(100);
    expect(ageSeconds(aged, NOW + 5_500)).toBe(105);
  });

  it('RFC 9211 §2.6: ttl is the remaining freshness, and negative as soon as the object is stale', () => {
    expect(ttlSeconds(o, NOW)).toBe(60);
    expect(ttlSeconds(o, NOW + 60_000)).toBeLessThan(0);
    expect(ttlSeconds(o, NOW + 60_100)).toBe(-1);
    expect(ttlSeconds(o, NOW + 70_000)).toBe(-10);
  });
});

// Invalidation: purge one URL (every Vary variant), ban by prefix or regular expression (applied lazily
// at lookup, plus a bounded background sweep — Varnish's ban lurker), purge by tag (Surrogate-Key /
// Cache-Tag), soft purge (mark stale instead of removing, so stale can still cover a failing origin),
// and purge everything. Every operation answers how many objects it hit.
import { markStale, type CachedObject } from './object.ts';
import type { Store } from './store.ts';
import type { Invalidation } from '../coord/types.ts';

export type PurgeMode = 'hard' | 'soft';

/** prefix: of host + path; path-prefix: of the path on any host; regex: over host + path + query. */
export type BanSpec = { kind: 'prefix'; value: string } | { kind: 'path-prefix'; value: string } | { kind: 'regex'; value: string };

type Ban = { id: number; spec: BanSpec; test: (primary: string) => boolean; mode: PurgeMode; createdAt: number };

export type BanVerdict = 'keep' | 'remove' | 'stale';

/** Most bans kept at once; older ones are dropped once the lurker has swept past them. */
const MAX_BANS = 1000;
/** Objects the lurker examines per tick, so a large cache never blocks the event loop. */
const LURKER_BATCH = 2000;

export class Invalidator {
  readonly #store: Store;
  #bans: Ban[] = [];
  #nextId = 1;
  #timer: NodeJS.Timeout | undefined;
  /** Keys still to examine in the current lurker sweep (a snapshot, so store mutations cannot derail it). */
  #sweep: string[] | undefined;
  #sweepAt = 0;
  /**
   * Told of every invalidation made here (not of those applied with `applyRemote`): a fleet broadcasts it
   * to the other instances and applies it to the shared store (coord/).
   */
  onInvalidate: ((inv: Invalidation) => void) | undefined;

  constructor(store: Store) {
    this.#store = store;
  }

  /** Applies an invalidation that came from another process, without telling `onInvalidate` again. */
  applyRemote(inv: Invalidation): number {
    const tell = this.onInvalidate;
    this.onInvalidate = undefined;
    try {
      if (inv.op === 'purge') return this.purgeUrl(inv.primary, inv.mode);
      if (inv.op === 'ban') return this.ban(inv.spec, inv.mode, inv.at);
      if (inv.op === 'tags') return this.purgeTags(inv.tags, inv.mode);
      return this.purgeAll(inv.mode);
    } finally {
      this.onInvalidate = tell;
    }
  }

  /** Purges every variant of one URL (primary key). */
  purgeUrl(primary: string, mode: PurgeMode): number {
    this.onInvalidate?.({ op: 'purge', primary, mode });
    if (mode === 'hard') return this.#store.removeAll(primary);
    let n = 0;
    for (const [, o] of this.#store.entries()) {
      if (o.primary === primary) {
        markStale(o, Date.now());
        n++;
      }
    }
    return n;
  }

  /** Adds a ban; returns how many stored objects it matches now. Throws on an invalid regular expression. */
  ban(spec: BanSpec, mode: PurgeMode, now = Date.now()): number {
    const test = banTest(spec);
    this.onInvalidate?.({ op: 'ban', spec, mode, at: now });
    const ban: Ban = { id: this.#nextId++, spec, test, mode, createdAt: now };
    this.#bans.push(ban);
    if (this.#bans.length > MAX_BANS) this.#bans.shift();
    let n = 0;
    for (const [, o] of this.#store.entries()) if (o.storedAt <= now && test(o.primary)) n++;
    this.#sweep = undefined; // restart the sweep so it covers the new ban
    return n;
  }

  /** Purges objects carrying any of the tags. */
  purgeTags(tags: readonly string[], mode: PurgeMode): number {
    this.onInvalidate?.({ op: 'tags', tags, mode });
    const want = new Set(tags);
    const hit: string[] = [];
    for (const [key, o] of this.#store.entries()) {
      if (o.tags.some((t) => want.has(t))) {
        if (mode === 'soft') markStale(o, Date.now());
        hit.push(key);
      }
    }
    if (mode === 'hard') for (const k of hit) this.#store.delete(k);
    return hit.length;
  }

  purgeAll(mode: PurgeMode): number {
    this.onInvalidate?.({ op: 'all', mode });
    if (mode === 'hard') {
      this.#bans = [];
      return this.#store.clear();
    }
    let n = 0;
    const now = Date.now();
    for (const [, o] of this.#store.entries()) {
      markStale(o, now);
      n++;
    }
    return n;
  }

  /** Lookup-time check: does a ban issued after this object was stored match it? */
  verdict(o: CachedObject): BanVerdict {
    let v: BanVerdict = 'keep';
    for (let i = this.#bans.length - 1; i >= 0; i--) {
      const b = this.#bans[i]!;
      if (b.createdAt < o.storedAt) break; // bans are in creation order: older ones cannot apply
      if (b.test(o.primary)) {
        if (b.mode === 'hard') return 'remove';
        v = 'stale';
      }
    }
    return v;
  }

  /** Applies bans to one object as lookup would; true when it was removed. */
  apply(key: string, o: CachedObject): boolean {
    const v = this.verdict(o);
    if (v === 'remove') return this.#store.delete(key);
    if (v === 'stale' && !o.invalidated) markStale(o, Date.now());
    return false;
  }

  get banCount(): number {
    return this.#bans.length;
  }

  /** Starts the ban lurker: every `intervalMs`, examine up to LURKER_BATCH objects. */
  startLurker(intervalMs = 100): void {
    this.#timer ??= setInterval(() => this.lurk(), intervalMs);
    this.#timer.unref();
  }

  /** One lurker step; returns the number of objects removed. Once a full sweep ends, bans older than every object are dropped. */
  lurk(batch = LURKER_BATCH): number {
    if (this.#bans.length === 0) return 0;
    if (!this.#sweep) {
      this.#sweep = [];
      for (const [k] of this.#store.entries()) this.#sweep.push(k);
      this.#sweepAt = 0;
    }
    let removed = 0;
    const end = Math.min(this.#sweep.length, this.#sweepAt + batch);
    for (; this.#sweepAt < end; this.#sweepAt++) {
      const key = this.#sweep[this.#sweepAt]!;
      const o = this.#store.peek(key);
      if (o && this.apply(key, o)) removed++;
    }
    if (this.#sweepAt >= this.#sweep.length) {
      // A whole sweep applied every ban to every object stored before it (a new ban restarts the sweep;
      // objects stored since are newer than every ban): soft marks are set, hard matches gone.
      this.#sweep = undefined;
      this.#bans = [];
    }
    return removed;
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }
}

/** The predicate of a ban over primary keys (host + path + query). Throws on an invalid regular expression. */
export function banTest(spec: BanSpec): (primary: string) => boolean {
  if (spec.kind === 'prefix') return (p) => p.startsWith(spec.value);
  if (spec.kind === 'path-prefix') return (p) => p.startsWith(spec.value, p.indexOf('/'));
  return regexTest(spec.value);
}

function regexTest(source: string): (s: string) => boolean {
  const re = new RegExp(source);
  return (s) => re.test(s);
}

/** Tags from the configured headers: Surrogate-Key is space-separated, Cache-Tag comma-separated. */
export function parseTags(headers: Record<string, string | string[] | undefined>, names: readonly string[]): string[] {
  const out = new Set<string>();
  for (const name of names) {
    const v = headers[name];
    if (v === undefined) continue;
    for (const t of (Array.isArray(v) ? v.join(' ') : v).split(/[\s,]+/)) if (t) out.add(t);
  }
  return [...out];
}

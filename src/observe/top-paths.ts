// The slowest and most failing URL paths over the last 15 minutes: a bounded top-N, never per-URL metrics.
// One generation per minute, each capped in distinct paths (the rest count under `(other)`), 15 kept:
// memory stays bounded whatever the clients request, and old slowness ages out instead of lingering.
import type { Exchange } from '../server/exchange.ts';
import { pathOf } from './classify.ts';

const GENERATION_MS = 60_000;
const GENERATIONS = 15;
/** Distinct paths tracked per generation. */
const MAX_PATHS = 1000;
const OTHER = '(other)';

type Entry = { count: number; totalMs: number; maxMs: number; failures: number; lastClass: string | undefined; example: string | undefined; backend: string | undefined };

export type PathRow = { path: string; count: number; avgMs: number; maxMs: number; failures: number; lastClass?: string; example?: string; backend?: string };

export class TopPaths {
  #gens: { start: number; paths: Map<string, Entry> }[] = [];

  /** Records requests that reached the origin (or failed trying): hits would hide a slow origin behind their speed. */
  request(ex: Exchange, now = Date.now()): void {
    const failed = ex.error !== undefined || (ex.res.headersSent && ex.res.statusCode >= 500);
    if (ex.attempts.length === 0 && !failed) return;
    let g = this.#gens[this.#gens.length - 1];
    if (!g || now - g.start >= GENERATION_MS) {
      g = { start: now, paths: new Map() };
      this.#gens.push(g);
      if (this.#gens.length > GENERATIONS) this.#gens.shift();
    }
    let path = pathOf(ex.target);
    if (!g.paths.has(path) && g.paths.size >= MAX_PATHS) path = OTHER;
    let e = g.paths.get(path);
    if (!e) g.paths.set(path, (e = { count: 0, totalMs: 0, maxMs: 0, failures: 0, lastClass: undefined, example: undefined, backend: undefined }));
    const ms = ex.elapsedMs();
    e.count++;
    e.totalMs += ms;
    if (ms > e.maxMs) e.maxMs = ms;
    e.backend = ex.backend ?? e.backend;
    if (failed) {
      e.failures++;
      e.lastClass = ex.error?.type ?? `received-status=${ex.res.statusCode}`;
      e.example = ex.id;
    }
  }

  #merged(now: number): Map<string, Entry> {
    const out = new Map<string, Entry>();
    for (const g of this.#gens) {
      if (now - g.start > GENERATION_MS * GENERATIONS) continue;
      for (const [p, e] of g.paths) {
        const m = out.get(p);
        if (!m) out.set(p, { ...e });
        else {
          m.count += e.count;
          m.totalMs += e.totalMs;
          m.maxMs = Math.max(m.maxMs, e.maxMs);
          m.failures += e.failures;
          m.lastClass = e.lastClass ?? m.lastClass;
          m.example = e.example ?? m.example;
          m.backend = e.backend ?? m.backend;
        }
      }
    }
    return out;
  }

  /** The `n` slowest paths by mean response time, and the `n` with the most failures. */
  top(n = 10, now = Date.now()): { slowest: PathRow[]; failing: PathRow[] } {
    const rows: PathRow[] = [...this.#merged(now)].map(([path, e]) => ({
      path,
      count: e.count,
      avgMs: Math.round((e.totalMs / e.count) * 10) / 10,
      maxMs: Math.round(e.maxMs * 10) / 10,
      failures: e.failures,
      lastClass: e.lastClass,
      example: e.example,
      backend: e.backend,
    }));
    return {
      slowest: [...rows].sort((a, b) => b.avgMs - a.avgMs || b.count - a.count).slice(0, n),
      failing: rows.filter((r) => r.failures > 0).sort((a, b) => b.failures - a.failures || b.count - a.count).slice(0, n),
    };
  }
}

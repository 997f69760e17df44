// Durations and sizes as operators write them in YAML. Hand-written because the grammar is tiny and the
// error message must say exactly what is valid; a library would add a dependency for two regexes.

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$/;
const DURATION_MS: Record<string, number> = { ms: 1, s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 7 * 86400e3 };

export const DURATION_HINT = 'a duration like 250ms, 3.5s, 10m, 1h, 1d (or 0)';
export const SIZE_HINT = 'a size like 512B, 64KiB, 256MiB, 1GiB (or a number of bytes)';

/** Parses `250ms`, `3.5s`, `10m`, `1d` into milliseconds; `0` alone is allowed. Returns undefined when invalid. */
export function parseDuration(value: unknown): number | undefined {
  if (value === 0 || value === '0') return 0;
  if (typeof value !== 'string') return undefined;
  const m = DURATION.exec(value.trim());
  if (!m) return undefined;
  return Math.round(Number(m[1]) * DURATION_MS[m[2]!]!);
}

const SIZE = /^(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|KB|MB|GB|k|K|M|G)?$/;
const SIZE_BYTES: Record<string, number> = {
  B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, KB: 1e3, MB: 1e6, GB: 1e9, k: 1024, K: 1024, M: 1024 ** 2, G: 1024 ** 3,
};

/** Parses `64KiB`, `256MiB` (binary), `10MB` (decimal), or a plain number of bytes. */
export function parseSize(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isInteger(value) && value >= 0 ? value : undefined;
  if (typeof value !== 'string') return undefined;
  const m = SIZE.exec(value.trim());
  if (!m) return undefined;
  return Math.round(Number(m[1]) * SIZE_BYTES[m[2] ?? 'B']!);
}

export function formatDuration(ms: number): string {
  if (ms === 0) return '0';
  if (ms % 86400e3 === 0) return `${ms / 86400e3}d`;
  if (ms % 3600e3 === 0) return `${ms / 3600e3}h`;
  if (ms % 60e3 === 0) return `${ms / 60e3}m`;
  if (ms % 1e3 === 0) return `${ms / 1e3}s`;
  if (ms >= 1000) return `${ms / 1e3}s`;
  return `${ms}ms`;
}

export function formatSize(bytes: number): string {
  for (const [unit, n] of [['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024]] as const) {
    if (bytes >= n && bytes % n === 0) return `${bytes / n}${unit}`;
  }
  return `${bytes}B`;
}

// Cache keys and Vary (RFC 9111 §2, §4.1). The primary key is the target URI; a response that varies is
// stored under the primary key plus the normalised values of the request fields it names.

/** Primary cache key: host (lowercased, default port dropped) + path and query, as received. */
export function primaryKey(host: string, pathAndQuery: string): string {
  return `${host.toLowerCase()}${pathAndQuery}`;
}

/** Field names of a Vary header, lowercased and sorted; `'*'` when it contains `*`; [] when absent. */
export function parseVary(v: string | string[] | undefined): string[] | '*' {
  if (v === undefined) return [];
  const names = (Array.isArray(v) ? v.join(',') : v)
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean);
  if (names.includes('*')) return '*';
  return [...new Set(names)].sort();
}

/**
 * The secondary key: the request's values for the Vary fields, normalised by combining repeated fields
 * and collapsing whitespace after commas (§4.1 permits normalisation), so `gzip,br` matches `gzip, br`.
 */
export function varyKey(fields: readonly string[], reqHeaders: Record<string, string | string[] | undefined>): string {
  if (fields.length === 0) return '';
  let out = '';
  for (const f of fields) {
    const v = reqHeaders[f];
    const s = v === undefined ? '' : (Array.isArray(v) ? v.join(',') : v).replace(/\s*,\s*/g, ',').trim();
    out += `\n${f}:${v === undefined ? '\u0000' : s}`;
  }
  return out;
}

/** The full key of one variant: the primary key, plus the request's values of the Vary fields when there are any. */
export function variantKey(primary: string, fields: readonly string[], reqHeaders: Record<string, string | string[] | undefined>): string {
  return fields.length === 0 ? primary : primary + varyKey(fields, reqHeaders);
}

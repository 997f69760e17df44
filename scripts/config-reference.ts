// Renders the configuration reference from the schema (src/config/schema.ts) into README.md between
// the markers, so the documentation cannot drift from what is validated. `npm run docs:config`;
// `--check` exits 1 when README is out of date (run by the test suite).
import { readFileSync, writeFileSync } from 'node:fs';
import { z } from 'zod';
import { ConfigSchema } from '../src/config/schema.ts';

type JsonSchema = {
  type?: string | string[];
  description?: string;
  default?: unknown;
  unit?: string;
  properties?: Record<string, JsonSchema>;
  items?: JsonSchema;
  enum?: unknown[];
  anyOf?: JsonSchema[];
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
};

const START = '<!-- config-reference:start -->';
const END = '<!-- config-reference:end -->';

function typeOf(s: JsonSchema): string {
  if (s.unit) return s.unit;
  if (s.enum) return s.enum.map((v) => `\`${String(v)}\``).join(' \\| ');
  if (s.anyOf) return s.anyOf.map(typeOf).join(' \\| ');
  if (s.type === 'array') return `list of ${s.items ? (s.items.properties ? 'objects' : typeOf(s.items)) : 'values'}`;
  return Array.isArray(s.type) ? s.type.join(' \\| ') : (s.type ?? 'any');
}

function fmtDefault(s: JsonSchema): string {
  if (s.default === undefined) return '—';
  if (typeof s.default === 'object') return Object.keys(s.default as object).length ? `\`${JSON.stringify(s.default)}\`` : '—';
  return `\`${String(s.default)}\``;
}

/** A union (e.g. `listen`: a string or objects): the object form whose keys are documented. */
function objectBranch(s: JsonSchema, list = false): { schema: JsonSchema; list: boolean } | undefined {
  if (s.properties) return { schema: s, list };
  if (s.type === 'array' && s.items) return objectBranch(s.items, true);
  for (const b of s.anyOf ?? []) {
    const found = objectBranch(b, list);
    if (found) return found;
  }
  return undefined;
}

function rows(s: JsonSchema, path: string, out: string[]): void {
  const props = s.properties ?? (s.type === 'array' ? s.items?.properties : undefined);
  if (!props) return;
  for (const [key, child] of Object.entries(props)) {
    const p = s.type === 'array' ? `${path}[].${key}` : path ? `${path}.${key}` : key;
    const desc = (child.description ?? '').replace(/\|/g, '\\|').replace(/\n/g, ' ');
    out.push(`| \`${p}\` | ${typeOf(child)} | ${fmtDefault(child)} | ${desc} |`);
    const branch = child.properties || child.items?.properties ? undefined : objectBranch(child);
    if (branch) rows(branch.schema, branch.list ? `${p}[]` : p, out);
    else rows(child, p, out);
  }
}

export function renderReference(): string {
  const schema = z.toJSONSchema(ConfigSchema, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
  const out = [
    'Durations: `250ms`, `3.5s`, `10m`, `1h`, `1d`. Sizes: `512B`, `64KiB`, `256MiB`, `1GiB`. `${ENV_VAR}` and `${ENV_VAR:-default}` are substituted in any string value.',
    '',
    '| key | type | default | meaning |',
    '|---|---|---|---|',
  ];
  rows(schema, '', out);
  return out.join('\n');
}

const file = new URL('../README.md', import.meta.url);
const readme = readFileSync(file, 'utf8');
const a = readme.indexOf(START);
const b = readme.indexOf(END);
if (a === -1 || b === -1) {
  console.error('README.md has no config-reference markers');
  process.exit(1);
}
const next = `${readme.slice(0, a + START.length)}\n${renderReference()}\n${readme.slice(b)}`;
if (process.argv.includes('--check')) {
  if (next !== readme) {
    console.error('README.md configuration reference is out of date: run `npm run docs:config`');
    process.exit(1);
  }
  console.log('README.md configuration reference is up to date');
} else {
  writeFileSync(file, next);
  console.log('README.md configuration reference updated');
}

// The dashboard's built assets (index.html and the bundle under static/), committed in src/admin/assets
// by `npm run build:dashboard` so `npm start` needs no build step. Read once at start, served from memory.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { extname, join } from 'node:path';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
};

export type Asset = { body: Buffer; type: string };

export const ASSETS_DIR = new URL('./assets/', import.meta.url);

/** URL path (`/`, `/static/dashboard.js`) → asset. */
export function loadAssets(dir: URL = ASSETS_DIR): Map<string, Asset> {
  const out = new Map<string, Asset>();
  const root = dir.pathname;
  if (!existsSync(root)) return out;
  for (const rel of readdirSync(root, { recursive: true, encoding: 'utf8' })) {
    const type = TYPES[extname(rel)];
    if (!type) continue;
    const url = `/${rel.split('\\').join('/')}`;
    out.set(url === '/index.html' ? '/' : url, { body: readFileSync(join(root, rel)), type });
  }
  return out;
}

export const MISSING_DASHBOARD = 'The dashboard assets are not built: run `npm run build:dashboard`. The API is at /api/*.\n';

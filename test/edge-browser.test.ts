// Chromium (Debian's, driven by playwright-core as in the dashboard test) loads a page through Lacquer over
// HTTP/2 with TLS, trusting only the test root CA: the page, its script and stylesheet come over h2, the
// text assets brotli-compressed, and the script runs.
import { X509Certificate, createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { chromium, type Browser } from 'playwright-core';
import { makePki, startEdge, type Edge, type Pki } from './edge-helpers.ts';

const CHROMIUM = '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];

let pki: Pki | undefined;
let e: Edge | undefined;
let browser: Browser | undefined;
afterEach(async () => {
  await browser?.close();
  await e?.close();
  pki?.close();
  browser = e = pki = undefined;
});

const SCRIPT = `document.getElementById('out').textContent = 'script ran: ' + ${JSON.stringify('x'.repeat(4000))}.length;\n`;
const CSS = `body { font-family: sans-serif; }\n${'.c { color: #123456; }\n'.repeat(200)}`;
const PAGE = `<!doctype html><html><head><title>edge</title><link rel="stylesheet" href="/style.css"></head><body><p id="out">waiting</p>${'<p>filler text for compression</p>'.repeat(100)}<script src="/app.js"></script></body></html>`;

describe('a real browser over HTTP/2 and TLS', () => {
  it.skipIf(!existsSync(CHROMIUM) && !process.env.CI)('Chromium loads a page over h2 from a certificate of the test CA, text assets compressed', { timeout: 60_000 }, async () => {
    pki = makePki();
    const assets: Record<string, [string, string]> = { '/': ['text/html; charset=utf-8', PAGE], '/app.js': ['application/javascript', SCRIPT], '/style.css': ['text/css', CSS] };
    e = await startEdge(
      (req, res) => {
        const a = assets[req.url ?? ''];
        if (!a) return void res.writeHead(404).end();
        res.writeHead(200, { 'content-type': a[0], 'cache-control': 'max-age=60' });
        res.end(a[1]);
      },
      { listen: [{ address: '127.0.0.1:0', tls: pki.issue('browser', ['a.test']) }] },
    );
    const port = e.proxy.listeners[0]!.port;
    // Trust the test CA by the key of its intermediate (which the listener sends with the leaf): without
    // certutil there is no NSS store to install the root into, and Chromium matches this list on the chain.
    const intermediate = new X509Certificate(readFileSync(join(pki.dir, 'int.pem')));
    const spki = createHash('sha256').update(intermediate.publicKey.export({ type: 'spki', format: 'der' })).digest('base64');
    browser = await chromium.launch({ executablePath: CHROMIUM, args: [...ARGS, `--ignore-certificate-errors-spki-list=${spki}`, '--host-resolver-rules=MAP a.test 127.0.0.1'] });
    const page = await browser.newPage();
    const encodings: Record<string, string | undefined> = {};
    page.on('response', (r) => {
      encodings[new URL(r.url()).pathname] = r.headers()['content-encoding'];
    });
    const errors: string[] = [];
    page.on('pageerror', (x) => errors.push(x.message));
    const res = await page.goto(`https://a.test:${port}/`);
    expect(res?.status()).toBe(200);
    await expect.poll(() => page.locator('#out').textContent(), { timeout: 10_000 }).toBe('script ran: 4000');
    // Runs in the page (DOM types are not in this project's lib): the protocol of the page and of each resource.
    const protocols = await page.evaluate<string[]>('[...performance.getEntriesByType("navigation"), ...performance.getEntriesByType("resource")].map((t) => t.nextHopProtocol)');
    expect(protocols.length).toBeGreaterThanOrEqual(3); // the page, its script and stylesheet (and perhaps a favicon)
    expect(new Set(protocols)).toEqual(new Set(['h2']));
    expect(encodings).toMatchObject({ '/': 'br', '/app.js': 'br', '/style.css': 'br' });
    expect(errors).toEqual([]);
    await expect.poll(() => e!.log.access().filter((l) => l.protocol === 'HTTP/2.0').length).toBeGreaterThanOrEqual(3);
  });
});

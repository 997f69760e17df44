import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

describe('README', () => {
  it('configuration reference matches src/config/schema.ts (run `npm run docs:config` to update)', () => {
    const out = execFileSync(process.execPath, ['scripts/config-reference.ts', '--check'], { encoding: 'utf8' });
    expect(out).toContain('up to date');
  });
});

describe('README examples', () => {
  it('every complete YAML configuration in README.md is accepted by the validator', async () => {
    const { readFileSync } = await import('node:fs');
    const { parseConfigText } = await import('../src/config/load.ts');
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const blocks = [...readme.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!).filter((b) => /^(backends|pools):/m.test(b));
    expect(blocks.length).toBeGreaterThan(0);
    for (const b of blocks) expect(() => parseConfigText(b, 'README example', { SLACK_WEBHOOK_URL: 'http://127.0.0.1:1/x' })).not.toThrow();
  });
});

describe('README check example', () => {
  it('`lacquer check` prints exactly what the README shows for its broken.yaml (issue 11: the example had gone stale)', async () => {
    const { mkdtempSync, readFileSync, rmSync, writeFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const block = /```console\n\$ cat broken\.yaml\n([\s\S]*?)\$ npx lacquer check -c broken\.yaml\n([\s\S]*?)```/.exec(readme);
    expect(block, 'the console block with `cat broken.yaml` and `npx lacquer check -c broken.yaml`').toBeTruthy();
    const dir = mkdtempSync(join(tmpdir(), 'lacquer-docs-'));
    try {
      writeFileSync(join(dir, 'broken.yaml'), block![1]!);
      const root = new URL('..', import.meta.url).pathname;
      let out = '';
      try {
        execFileSync(process.execPath, [join(root, 'src/cli/main.ts'), 'check', '-c', 'broken.yaml'], { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      } catch (e) {
        out = (e as { stderr: string }).stderr;
      }
      expect(out).toBe(block![2]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('README links', () => {
  it('every relative link points to a file inside the repository (issue 11: links to ../shared/ left it)', async () => {
    const { existsSync, readFileSync } = await import('node:fs');
    const { resolve, relative } = await import('node:path');
    const root = new URL('..', import.meta.url).pathname;
    for (const doc of ['README.md', 'docs/FAILURES.md']) {
      const text = readFileSync(resolve(root, doc), 'utf8');
      const links = [...text.matchAll(/\]\(([^)\s#]+)(#[^)]*)?\)/g)].map((m) => m[1]!).filter((l) => !/^[a-z]+:/i.test(l));
      expect(links.length).toBeGreaterThan(0);
      for (const l of links) {
        const target = resolve(root, doc, '..', l);
        expect(relative(root, target).startsWith('..'), `${doc}: ${l} leaves the repository`).toBe(false);
        expect(existsSync(target), `${doc}: ${l} does not exist`).toBe(true);
      }
    }
  });
});

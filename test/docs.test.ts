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
